package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/reconcile"
)

// TestCrashAtEveryStepConverges kills the real sluice process with SIGKILL
// at each step of a candidate's life, restarts it, and checks the queue
// ends exactly as an uninterrupted run would: nothing reverted twice, no
// verdict lost, no namespace left behind.
func TestCrashAtEveryStepConverges(t *testing.T) {
	points := []string{
		"namespace-created:1", // a3's namespace exists, nothing applied
		"applied:2",           // b4 applied, not yet judged
		"verdict:1",           // a3 passed, before its note and the fast-forward
		"verdict:2",           // b4 failed, before the revert and the note
		"revert-pushed:1",     // b4's revert on main, its note not written
		"fast-forwarded:1",    // staging moved to a3
		"fast-forwarded:2",    // staging moved to the revert, the last step
	}
	for _, point := range points {
		t.Run(point, func(t *testing.T) {
			s := newScenario(t, scenarioOptions{})
			a3 := s.push("Berlin", "bump A to v3", pair(version("a", "v3"))...)
			b4 := s.push("London", "bump B to v4", pair(version("b", "v4"))...)

			crashed := s.runOnce(reconcile.EnvCrashAt + "=" + point)
			if crashed.code != -1 {
				t.Fatalf("sluice exited %d, want it killed at %s", crashed.code, point)
			}
			if r := s.runOnce(); r.code != 0 {
				t.Fatalf("restarted sluice exited %d", r.code)
			}

			s.mustNote(a3, "passed")
			failed := s.mustNote(b4, "failed")
			var reverts []string
			for _, h := range strings.Fields(s.git("rev-list", "main")) {
				msg := s.git("log", "-1", "--format=%B", h)
				if gitrepo.ParseTrailers(msg).Get(gitrepo.TrailerRejected) == b4 {
					reverts = append(reverts, h)
				}
			}
			if len(reverts) != 1 {
				t.Fatalf("b4 reverted %d times, want once: %v", len(reverts), reverts)
			}
			revert := reverts[0]
			if got := s.tip("main"); got != revert {
				t.Errorf("main = %s, want the revert %s", got[:7], revert[:7])
			}
			if failed.RevertCommit.String() != revert {
				t.Errorf("b4's note names revert %s, want %s", failed.RevertCommit, revert[:7])
			}
			s.mustNote(revert, "passed")
			if got := s.tip("staging"); got != revert {
				t.Errorf("staging = %s, want %s", got[:7], revert[:7])
			}
			for _, h := range s.history("staging") {
				if h == b4 {
					t.Errorf("staging pointed at b4")
				}
			}
			if left := s.sluiceNamespaces(); len(left) != 0 {
				t.Errorf("namespaces left after the restart: %v", left)
			}
			t.Logf("crash at %s: converged (%s)", point, fmt.Sprint(crashed.took.Round(1e6)))
		})
	}
}
