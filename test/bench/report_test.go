package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReportComparesStrategies: the report says MISMATCH, naming what
// differs, when a strategy's culprits, final target or verdicts differ from
// serial gating's, and says they are the same otherwise.
func TestReportComparesStrategies(t *testing.T) {
	serial := result{name: "sluice serial", makespan: 100 * time.Second, target: "Revert \"b\"", tree: "aaaa",
		culprits: []string{"b"}, verdicts: map[string]string{"a": "passed", "b": "failed"},
		steps: steps{candidates: 2, total: 10 * time.Second, commands: 4 * time.Second}}
	tests := []struct {
		name  string
		other func(r *result)
		want  []string
	}{
		{name: "same", other: func(r *result) {}, want: []string{"same culprits, final target and verdicts as sluice serial"}},
		{name: "culprits", other: func(r *result) { r.culprits = []string{"a"} }, want: []string{"MISMATCH", `culprits ["a"]`}},
		{name: "final tree", other: func(r *result) { r.tree = "bbbb" }, want: []string{"MISMATCH", "final target"}},
		{name: "verdict", other: func(r *result) { r.verdicts = map[string]string{"a": "failed", "b": "failed"} }, want: []string{"MISMATCH", `"a" failed, sluice serial says passed`}},
		{name: "missing verdict", other: func(r *result) { r.verdicts = map[string]string{"b": "failed"} }, want: []string{"MISMATCH", `"a" none`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := serial
			spec.name, spec.makespan = "sluice speculative", 25*time.Second
			spec.culprits = append([]string(nil), serial.culprits...)
			spec.verdicts = map[string]string{"a": "passed", "b": "failed"}
			tt.other(&spec)
			f, err := os.Create(filepath.Join(t.TempDir(), "report"))
			if err != nil {
				t.Fatal(err)
			}
			report(f, options{services: 1, commits: 2, broken: 1}, []result{serial, spec})
			f.Close()
			out, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("report lacks %q:\n%s", w, out)
				}
			}
			if tt.name == "same" && strings.Contains(string(out), "MISMATCH") {
				t.Errorf("report says MISMATCH for equal runs:\n%s", out)
			}
			if !strings.Contains(string(out), "0.25×") {
				t.Errorf("report lacks the ratio to serial:\n%s", out)
			}
		})
	}
}
