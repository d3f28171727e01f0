package config

import (
	"strings"
	"testing"
)

func TestParseGateKubeconfig(t *testing.T) {
	tests := []struct {
		name, file, kubeconfig string
		want, wantErr          string
	}{
		{name: "unset is the daemon's own", file: "/etc/sluice/sluice.yaml", want: ""},
		{name: "relative to the config file", file: "/etc/sluice/sluice.yaml", kubeconfig: "clusters/dev.kubeconfig", want: "/etc/sluice/clusters/dev.kubeconfig"},
		{name: "relative to a relative config file", file: "conf/sluice.yaml", kubeconfig: "dev.kubeconfig", want: "conf/dev.kubeconfig"},
		{name: "absolute (a mounted Secret)", file: "/etc/sluice/sluice.yaml", kubeconfig: "/var/run/secrets/dev/kubeconfig", want: "/var/run/secrets/dev/kubeconfig"},
		{name: "blank around the path", file: "/etc/sluice/sluice.yaml", kubeconfig: "' dev.kubeconfig'", wantErr: `sluice.yaml:3: gates[0].kubeconfig: " dev.kubeconfig" is not a file path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := "repository: {url: https://git.example.com/x.git}\ngates:\n  - name: staging\n    path: environments/staging\n    targetBranch: staging\n"
			if tt.kubeconfig != "" {
				data += "    kubeconfig: " + tt.kubeconfig + "\n"
			}
			c, err := Parse(tt.file, []byte(data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Gates[0].Kubeconfig; got != tt.want {
				t.Errorf("kubeconfig = %q, want %q", got, tt.want)
			}
		})
	}
}
