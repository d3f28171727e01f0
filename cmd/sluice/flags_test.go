package main

import (
	"strings"
	"testing"
)

// The Kubernetes client's rate limit is a flag; nonsense is a usage error
// before anything is read or connected.
func TestRunRefusesABadKubeAPIRateLimit(t *testing.T) {
	for _, args := range [][]string{
		{"--kube-api-qps", "0"},
		{"--kube-api-qps", "-5"},
		{"--kube-api-burst", "0"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, _, stderr := sluice(t, append(append([]string{"run"}, args...), "--config", "/nonexistent/sluice.yaml")...)
			if code != 2 || !strings.Contains(stderr, "--kube-api-qps and --kube-api-burst must be greater than zero") {
				t.Errorf("run %v exited %d, want 2 with a usage error naming the flags", args, code)
			}
		})
	}
}

// A negative --environment-starts is a usage error, before anything is
// read or connected; 0 (no limit) is the default.
func TestRunRefusesANegativeEnvironmentStarts(t *testing.T) {
	code, _, stderr := sluice(t, "run", "--environment-starts", "-1", "--config", "/nonexistent/sluice.yaml")
	if code != 2 || !strings.Contains(stderr, "--environment-starts must not be negative") {
		t.Errorf("exited %d, stderr %q; want 2 with a usage error naming the flag", code, stderr)
	}
}
