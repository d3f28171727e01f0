package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPromoteCommand: help, and what is refused before anything is read
// from or written to the repository, with its exit code.
func TestPromoteCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sluice.yaml")
	data := "repository: {url: http://127.0.0.1:1/x.git, verdictKeyEnv: SLUICE_TEST_UNSET_KEY}\ngates:\n" +
		"  - name: staging\n    path: environments/staging\n    targetBranch: staging\n" +
		"  - name: shared-dev\n    path: environments/shared-dev\n    targetBranch: shared-dev\n" +
		"    promote: {to: staging, paths: [\"versions/*.yaml\"]}\n"
	if err := os.WriteFile(cfg, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help", []string{"promote", "--help"}, 0, "sluice promote --config FILE --from GATE --to GATE SERVICE..."},
		{"no --from", []string{"promote", "--config", cfg, "--to", "staging", "a"}, 2, "--from and --to are required"},
		{"no service", []string{"promote", "--config", cfg, "--from", "shared-dev", "--to", "staging"}, 2, "name at least one SERVICE"},
		{"--from naming no gate", []string{"promote", "--config", cfg, "--from", "dev", "--to", "staging", "a"}, 2, `--from "dev": ` + cfg + " names no gate"},
		{"--from not promoting to --to", []string{"promote", "--config", cfg, "--from", "staging", "--to", "shared-dev", "a"}, 2, `--from "staging" does not promote to "shared-dev"`},
		{"a config that does not load", []string{"promote", "--config", filepath.Join(dir, "none.yaml"), "--from", "shared-dev", "--to", "staging", "a"}, 1, "none.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := sluice(t, tt.args...)
			if code != tt.code || !strings.Contains(stdout+stderr, tt.want) {
				t.Errorf("exit %d, output %q; want exit %d and %q", code, stdout+stderr, tt.code, tt.want)
			}
		})
	}
}
