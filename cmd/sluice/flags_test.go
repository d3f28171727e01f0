package main

import (
	"bytes"
	"context"
	"errors"
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
			var out, errb bytes.Buffer
			err := runCmd(context.Background(), append(args, "--config", "/nonexistent/sluice.yaml"), &out, &errb)
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--kube-api-qps and --kube-api-burst must be greater than zero") {
				t.Errorf("run %v = %v, want a usage error naming the flags", args, err)
			}
		})
	}
}
