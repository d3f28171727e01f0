package main

import (
	"strings"
	"testing"
)

// TestPreviewUsage: the preview commands say how to call them, and refuse a
// wrong call with exit code 2 before they read the config or a cluster.
func TestPreviewUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help of up", []string{"preview", "up", "--help"}, 0, "sluice preview up NAME --gate GATE (--branch BRANCH | --dir PATH)"},
		{"help lists the commands", []string{"preview", "--help"}, 0, "x-sluice-preview"},
		{"up without a name", []string{"preview", "up", "--gate", "staging", "--branch", "b"}, 2, "takes one preview NAME"},
		{"a name that is not a DNS label", []string{"preview", "up", "Bad_Name", "--gate", "staging", "--branch", "b"}, 2, `preview name "Bad_Name": not a preview name`},
		{"a name too long for a namespace", []string{"preview", "down", strings.Repeat("a", 49)}, 2, "at most 48 characters"},
		{"neither a branch nor a directory", []string{"preview", "up", "p", "--gate", "staging"}, 2, "give one of --branch and --dir"},
		{"both a branch and a directory", []string{"preview", "up", "p", "--gate", "staging", "--branch", "b", "--dir", "."}, 2, "give one of --branch and --dir"},
		{"up without a gate", []string{"preview", "up", "p", "--branch", "b"}, 2, "--gate is required"},
		{"test of a bad name", []string{"preview", "test", "a.b"}, 2, "not a preview name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := sluice(t, append(tt.args, "--kubeconfig", "/nonexistent/kubeconfig")...)
			if code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, stderr)
			}
			if !strings.Contains(stdout+stderr, tt.want) {
				t.Errorf("output %q does not say %q", stdout+stderr, tt.want)
			}
		})
	}
}
