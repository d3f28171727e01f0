package e2e

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/manifests"
	"github.com/sluice-gitops/sluice/test/gitserver"
)

// TestTwoGatesDrainTogether: a second gate (shared-dev) drains the same
// queue as staging, at the same time, on the same cluster. Each gate tests
// what changes its own environment in namespaces of its own, records its
// own verdicts next to the other's, and moves its own branch; B v4, which
// only staging's tests catch, is reverted once.
func TestTwoGatesDrainTogether(t *testing.T) { drainTwoGates(t, "", true) }

// drainTwoGates is TestTwoGatesDrainTogether with gateKeys (YAML, such as a
// strategy) added to both gates; it returns the scenario, a3 and b4. With
// skips, shared-dev must test a3 and pass b4 without a test.
func drainTwoGates(t *testing.T, gateKeys string, skips bool) (*scenario, string, string) {
	dev := "dev-" + randHex(3)
	s := newScenario(t, scenarioOptions{extraGate: gateKeys + "  - name: " + dev + "\n" +
		"    path: environments/shared-dev\n" +
		"    targetBranch: shared-dev\n" +
		"    timeouts: {apply: 30s, health: 60s}\n" +
		"    onFailure: {keepNamespace: 0s}\n" +
		"    retry: {initialBackoff: 1s, maxBackoff: 4s, onceAttempts: 5}\n" + gateKeys})
	if err := s.work.Push(t, "HEAD:refs/heads/shared-dev"); err != nil {
		t.Fatal(err)
	}
	s.srv.InstallHook(t, s.repo, "pre-receive", gitserver.ProtectBranches("main", "staging", "shared-dev"))

	devA3, devA3Content := version("a", "v3")
	devA3 = strings.Replace(devA3, "environments/staging/", "environments/shared-dev/", 1)
	a3 := s.push("Berlin", "bump A to v3 in shared-dev and staging", append(pair(version("a", "v3")), devA3, devA3Content)...)
	b4 := s.push("London", "bump B to v4", pair(version("b", "v4"))...)

	r := s.runOnce()
	if r.code != 0 {
		t.Fatalf("sluice run --once exited %d", r.code)
	}
	revert := s.tip("main")
	if got := s.git("log", "--format=%(trailers:key=Sluice-Rejected,valueonly)", "main"); strings.Count(got, b4) != 1 {
		t.Errorf("b4 was reverted %d times, want once", strings.Count(got, b4))
	}
	want := map[string]map[string]string{
		s.gate: {a3: "passed", b4: "failed", revert: "passed"},
		dev:    {a3: "passed", b4: "passed", revert: "passed"},
	}
	for gate, verdicts := range want {
		for sha, verdict := range verdicts {
			out, err := s.tryGit("notes", "--ref=sluice", "show", sha)
			if err != nil {
				t.Fatalf("no note on %s: %v", sha[:7], err)
			}
			n, err := gitrepo.DecodeNote([]byte(out))
			if err != nil {
				t.Fatal(err)
			}
			rec, ok := n.Get(gate)
			if !ok || rec.Verdict != verdict {
				t.Errorf("gate %s on %s: %q (found %t), want %s; reason %s", gate, sha[:7], rec.Verdict, ok, verdict, rec.Reason)
			}
			if !skips {
				continue
			}
			if gate == dev && sha == a3 && rec.Skipped {
				t.Errorf("gate %s skipped a3, which changes shared-dev", dev)
			}
			if gate == dev && sha == b4 && !rec.Skipped {
				t.Errorf("gate %s tested b4, which changes nothing in shared-dev", dev)
			}
		}
	}
	for _, branch := range []string{"staging", "shared-dev"} {
		if got := s.tip(branch); got != revert {
			t.Errorf("%s = %s, want the revert %s", branch, got[:7], revert[:7])
		}
	}
	if !strings.Contains(r.stdout, "["+dev+"]") || !strings.Contains(r.stdout, "["+s.gate+"]") {
		t.Errorf("progress does not show both gates:\n%s", r.stdout)
	}
	if log := s.srv.ProtectLog(t, s.repo); log != nil {
		t.Errorf("branch protection refused pushes: %q", log)
	}
	list, err := s.kube.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{LabelSelector: manifests.LabelGate + "=" + dev})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range list.Items {
		if ns.DeletionTimestamp == nil {
			t.Errorf("namespace %s of gate %s left behind", ns.Name, dev)
		}
	}
	return s, a3, b4
}
