package main

import (
	"io"
	"strings"
	"testing"
)

// TestLeaderElectFlags: the flags of leader election keep the controller
// defaults, and combinations that cannot work are usage errors (exit 2)
// before anything is read or started.
func TestLeaderElectFlags(t *testing.T) {
	root := newRootCommand(io.Discard, io.Discard)
	run, _, err := root.Find([]string{"run"})
	if err != nil {
		t.Fatal(err)
	}
	for flag, def := range map[string]string{
		"leader-elect": "false", "leader-elect-namespace": "",
		"leader-elect-lease-duration": "15s", "leader-elect-renew-deadline": "10s", "leader-elect-retry-period": "2s",
	} {
		f := run.Flags().Lookup(flag)
		if f == nil {
			t.Errorf("sluice run has no --%s", flag)
		} else if f.DefValue != def {
			t.Errorf("--%s defaults to %q, want %q", flag, f.DefValue, def)
		}
	}

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"with --once", []string{"--once", "--leader-elect"}, "--leader-elect is for the daemon: it cannot be combined with --once"},
		{"renew not under the lease", []string{"--leader-elect", "--leader-elect-lease-duration=5s", "--leader-elect-renew-deadline=5s"}, "--leader-elect-lease-duration (5s) must be greater than --leader-elect-renew-deadline (5s)"},
		{"retry not under renew", []string{"--leader-elect", "--leader-elect-retry-period=10s"}, "which must be greater than --leader-elect-retry-period (10s) > 0"},
		{"a zero retry", []string{"--leader-elect", "--leader-elect-retry-period=0s"}, "--leader-elect-retry-period (0s) > 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := sluice(t, append([]string{"run", "--config", "/nonexistent/sluice.yaml"}, tt.args...)...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q does not say %q", stderr, tt.want)
			}
		})
	}
}
