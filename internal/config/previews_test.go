package config

import (
	"strings"
	"testing"
)

func TestParsePreviews(t *testing.T) {
	tests := []struct {
		name     string
		previews string
		want     Previews // only Namespace, Routing, TTL compared
		wantErr  string
	}{
		{name: "defaults when unset", previews: "", want: Previews{Routing: RoutingExternalName, TTL: Duration{Duration: DefaultPreviewTTL}}},
		{name: "gateway-api with a namespace and a ttl", previews: "    previews: {namespace: staging, routing: gateway-api, ttl: 24h, branches: [\"preview/*\"]}\n",
			want: Previews{Namespace: "staging", Routing: RoutingGatewayAPI, TTL: Duration{Duration: 24 * 60 * 60 * 1e9}}},
		{name: "an unknown routing", previews: "    previews: {routing: istio}\n", wantErr: `sluice.yaml:3: gates[0].previews.routing: "istio": want externalname or gateway-api`},
		{name: "a bad namespace", previews: "    previews: {namespace: Staging_1}\n", wantErr: `gates[0].previews.namespace: "Staging_1" is not a valid namespace name`},
		{name: "a bad glob", previews: "    previews: {branches: [\"preview/[\"]}\n", wantErr: `gates[0].previews.branches[0]: "preview/[" is not a branch glob`},
		{name: "a zero ttl", previews: "    previews: {ttl: 0s}\n", wantErr: "gates[0].previews.ttl: must be greater than zero"},
		{name: "an unknown field", previews: "    previews: {brnaches: [x]}\n", wantErr: "gates[0].previews.brnaches: unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := "repository: {url: https://git.example.com/x.git}\ngates:\n  - name: staging\n    path: environments/staging\n    targetBranch: staging\n" + tt.previews
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
			p := c.Gates[0].Previews
			if p.Namespace != tt.want.Namespace || p.Routing != tt.want.Routing || p.TTL.Duration != tt.want.TTL.Duration {
				t.Errorf("got %+v, want %+v", p, tt.want)
			}
		})
	}
}
