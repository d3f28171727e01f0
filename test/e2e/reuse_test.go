package e2e

import (
	"slices"
	"strings"
	"testing"

	"github.com/sluice-gitops/sluice/manifests"
)

// The article's story on a gate with reuseEnvironment: the same verdicts,
// revert and staging as with a namespace per candidate, in fewer
// namespaces. A3 gets a new one and Z1 is brought into it; B4 fails there
// and again in a namespace of its own (only that counts), and A3's
// namespace goes back to Z1 for Z2; it is removed when `run --once` ends.
func TestReuseEnvironmentArticleScenario(t *testing.T) {
	s := newScenario(t, scenarioOptions{extraGate: "    reuseEnvironment: true\n"})
	a3 := s.push("Berlin", "bump A to v3", pair(version("a", "v3"))...)
	z1 := s.push("New York", "bump Z to v1", pair(version("z", "v1"))...)
	b4 := s.push("London", "bump B to v4", pair(version("b", "v4"))...)
	z2 := s.push("New York", "bump Z to v2", pair(version("z", "v2"))...)

	stop := s.watchNamespaces()
	r := s.runOnce()
	created := stop()
	if r.code != 0 {
		t.Fatalf("sluice run --once exited %d", r.code)
	}
	s.mustNote(a3, "passed")
	s.mustNote(z1, "passed")
	failed := s.mustNote(b4, "failed")
	if !strings.Contains(failed.Reason, "a-checks-b") || strings.Contains(failed.Reason, "reused") {
		t.Errorf("reason of b4: %q, want the failing test a-checks-b from its own namespace", failed.Reason)
	}
	s.mustNote(z2, "passed")
	revert := s.tip("main")
	if failed.RevertCommit.String() != revert {
		t.Fatalf("main is at %s, want b4's revert %s", revert[:7], failed.RevertCommit)
	}
	if got := s.tip("staging"); got != revert {
		t.Errorf("staging = %s, want the revert %s", got[:7], revert[:7])
	}
	for _, h := range s.history("staging") {
		if strings.Contains(s.file(h, "environments/staging/versions/b.yaml"), "b:v4") {
			t.Errorf("staging pointed at %s, whose tree holds B v4", h[:7])
		}
	}

	// Namespaces: A3's (then Z1, B4's first try, and Z2) and B4's own.
	want := []string{manifests.TestNamespace(s.gate, a3), manifests.TestNamespace(s.gate, b4)}
	slices.Sort(want)
	slices.Sort(created)
	if !slices.Equal(created, want) {
		t.Errorf("namespaces made: %v; want %v", created, want)
	}
	for _, want := range []string{
		"reused: 1 of ",
		"failed in the reused namespace " + manifests.TestNamespace(s.gate, a3),
		"testing again in a new namespace",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("progress does not say %q", want)
		}
	}
	// newScenario's cleanup checks that no namespace of the gate is left:
	// the kept one went when `run --once` ended.
}
