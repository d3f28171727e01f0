package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gitops/sluice/test/cluster"
)

// TestHostCommandsSeeTheTestEnvironment: a gate's test commands run on the
// daemon's host after health, with the test namespace, commit, gate and
// kubeconfig in their environment; a command that exits non-zero fails the
// commit with its output.
func TestHostCommandsSeeTheTestEnvironment(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "smoke.sh")
	tools, err := cluster.ToolsDir("") // SLUICE_TOOLS_DIR, else the repository's bin/
	if err != nil {
		t.Fatal(err)
	}
	kubectl := filepath.Join(tools, "kubectl")
	err = os.WriteFile(script, []byte(`#!/bin/sh
set -e
echo "$SLUICE_GATE $SLUICE_COMMIT $SLUICE_NAMESPACE" >> "$SMOKE_LOG"
img=$(`+kubectl+` --kubeconfig "$KUBECONFIG" -n "$SLUICE_NAMESPACE" get deployment a -o jsonpath='{.spec.template.spec.containers[0].image}')
case "$img" in *:v9) echo "smoke: A $img answers 500 on /api" >&2; exit 3;; esac
echo "smoke: A $img is fine"
`), 0o755)
	if err != nil {
		t.Fatal(err)
	}
	s := newScenario(t, scenarioOptions{extraGate: "    tests:\n      commands:\n        - name: smoke\n          command: [/bin/sh, " + script + "]\n          timeout: 1m\n"})
	good := s.push("Berlin", "bump A to v3", pair(version("a", "v3"))...)
	bad := s.push("Berlin", "bump A to v9", pair(version("a", "v9"))...)

	logFile := filepath.Join(dir, "smoke.log")
	if r := s.runOnce("SMOKE_LOG=" + logFile); r.code != 0 {
		t.Fatalf("sluice run --once exited %d", r.code)
	}
	s.mustNote(good, "passed")
	rec := s.mustNote(bad, "failed")
	for _, want := range []string{"test command smoke exited with code 3", "smoke: A registry.example.com/a:v9 answers 500"} {
		if !strings.Contains(rec.Reason, want) {
			t.Errorf("reason does not contain %q:\n%s", want, rec.Reason)
		}
	}
	b, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 2 || lines[0] != s.gate+" "+good+" sluice-"+s.gate+"-"+good[:7] {
		t.Errorf("the command saw:\n%s\nwant first %q", b, s.gate+" "+good+" sluice-"+s.gate+"-"+good[:7])
	}
}
