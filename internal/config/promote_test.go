package config

import (
	"slices"
	"strings"
	"testing"
)

func TestParsePromote(t *testing.T) {
	tests := []struct {
		name      string
		promote   string
		wantPaths []string
		wantErr   string
	}{
		{name: "none", promote: ""},
		{name: "to staging", promote: "    promote: {to: staging, paths: [\"versions/*.yaml\"]}\n", wantPaths: []string{"versions/*.yaml"}},
		{name: "to no gate", promote: "    promote:\n      to: prod\n      paths: [\"versions/*.yaml\"]\n", wantErr: `sluice.yaml:7: gates[0].promote.to: "prod" names no gate`},
		{name: "to itself", promote: "    promote: {to: shared-dev, paths: [x]}\n", wantErr: `gates[0].promote.to: "shared-dev" is this gate`},
		{name: "no to", promote: "    promote: {paths: [x]}\n", wantErr: "gates[0].promote.to: required"},
		{name: "no paths", promote: "    promote: {to: staging}\n", wantErr: "gates[0].promote.paths: required"},
		{name: "a bad glob", promote: "    promote: {to: staging, paths: [\"versions/[\"]}\n", wantErr: `gates[0].promote.paths[0]: "versions/[" is not a glob`},
		{name: "a glob leaving the gate", promote: "    promote: {to: staging, paths: [\"../staging/*.yaml\"]}\n", wantErr: `gates[0].promote.paths[0]: "../staging/*.yaml" is not a glob`},
		{name: "an absolute glob", promote: "    promote: {to: staging, paths: [\"/etc/*\"]}\n", wantErr: `gates[0].promote.paths[0]`},
		{name: "an unknown field", promote: "    promote: {to: staging, path: [x]}\n", wantErr: "gates[0].promote.path: unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := "repository: {url: https://git.example.com/x.git}\ngates:\n" +
				"  - name: shared-dev\n    path: environments/shared-dev\n    targetBranch: shared-dev\n" + tt.promote +
				"  - name: staging\n    path: environments/staging\n    targetBranch: staging\n"
			c, err := Parse("sluice.yaml", []byte(data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			p := c.Gates[0].Promote
			if p.Set() != (tt.wantPaths != nil) || !slices.Equal(p.Paths, tt.wantPaths) {
				t.Errorf("got %+v, want paths %v", p, tt.wantPaths)
			}
			if p.Set() {
				err := c.PromoteError("shared-dev", "paths[0]", "matches nothing")
				if want := "sluice.yaml:6: gates[0].promote.paths[0]: matches nothing"; err.Error() != want {
					t.Errorf("PromoteError = %q, want %q", err, want)
				}
			}
		})
	}
}
