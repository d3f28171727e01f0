package e2e

import (
	"encoding/json"
	"github.com/go-git/go-git/v5/plumbing"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-gitops/sluice/gitrepo"
)

// TestArticleScenario is the article's story: Berlin bumps A to v3, New
// York bumps Z to v1, London bumps B to v4, which breaks A; then an
// unrelated bump. Staging must never hold B v4.
func TestArticleScenario(t *testing.T) {
	s := newScenario(t, scenarioOptions{keepNamespace: "10m"})
	initial := s.tip("main")

	a3 := s.push("Berlin", "bump A to v3", pair(version("a", "v3"))...)
	z1 := s.push("New York", "bump Z to v1", pair(version("z", "v1"))...)
	b4 := s.push("London", "bump B to v4", pair(version("b", "v4"))...)
	x := s.push("New York", "bump Z to v2", pair(version("z", "v2"))...)

	r := s.runOnce()
	if r.code != 0 {
		t.Fatalf("sluice run --once exited %d", r.code)
	}

	s.mustNote(a3, "passed")
	s.mustNote(z1, "passed")
	failed := s.mustNote(b4, "failed")
	if !strings.Contains(failed.Reason, "a-checks-b") {
		t.Errorf("reason of b4 does not name the failing test a-checks-b:\n%s", failed.Reason)
	}
	later := s.mustNote(x, "passed")
	if !slices.Contains(hashes(later.Reverted), b4) {
		t.Errorf("x was tested with %v reverted, want b4 %s among them", hashes(later.Reverted), b4[:7])
	}

	// The revert commit is on main, after x, and says who rejected what.
	revert := s.tip("main")
	if revert == x || failed.RevertCommit.String() != revert {
		t.Fatalf("main is at %s, want the revert commit recorded in b4's note (%s)", revert[:7], failed.RevertCommit)
	}
	msg := s.git("log", "-1", "--format=%B", revert)
	if !strings.HasPrefix(msg, `Revert "bump B to v4"`) {
		t.Errorf("revert subject: %q", strings.SplitN(msg, "\n", 2)[0])
	}
	tr := gitrepo.ParseTrailers(msg)
	if tr.Get("Sluice-Gate") != s.gate || tr.Get("Sluice-Rejected") != b4 {
		t.Errorf("revert trailers = %v, want Sluice-Gate: %s and Sluice-Rejected: %s", tr, s.gate, b4)
	}
	if !strings.Contains(msg, "a-checks-b") {
		t.Errorf("revert message does not give the reason:\n%s", msg)
	}
	s.mustNote(revert, "passed")

	// Staging ends at the revert, renders B's old version, and never held B v4.
	if got := s.tip("staging"); got != revert {
		t.Errorf("staging = %s, want the revert commit %s", got[:7], revert[:7])
	}
	if b := s.file("staging", "environments/staging/versions/b.yaml"); !strings.Contains(b, "b:v3") {
		t.Errorf("staging's b.yaml:\n%s", b)
	}
	if z := s.file("staging", "environments/staging/versions/z.yaml"); !strings.Contains(z, "z:v2") {
		t.Errorf("staging's z.yaml lost the later bump:\n%s", z)
	}
	hist := s.history("staging")
	for _, h := range hist {
		if strings.Contains(s.file(h, "environments/staging/versions/b.yaml"), "b:v4") {
			t.Errorf("staging pointed at %s, whose tree holds B v4", h[:7])
		}
	}
	for _, want := range []string{initial, a3, z1, revert} {
		if !slices.Contains(hist, want) {
			t.Errorf("staging never pointed at %s; history %v", want[:7], hist)
		}
	}
	if slices.Contains(hist, x) {
		t.Errorf("staging pointed at x (%s) while b4 was still in its tree", x[:7])
	}

	// The failed candidate's namespace is kept for people to look at, labelled.
	kept := s.sluiceNamespaces()
	if len(kept) != 1 || !strings.HasSuffix(kept[0], b4[:7]) {
		t.Errorf("kept namespaces = %v, want the one of b4", kept)
	}

	// A commit that changes nothing staging renders passes without a namespace.
	doc := s.push("Berlin", "Explain the versions layout", "README.md", "# Desired state\n\nSee environments/.\n")
	dev := s.push("Berlin", "try A v4 in shared-dev", "environments/shared-dev/versions/a.yaml", strings.Replace(s.file("main", "environments/shared-dev/versions/a.yaml"), "a:v3", "a:v4", 1))
	stop := s.watchNamespaces()
	if r := s.runOnce(); r.code != 0 {
		t.Fatalf("second run exited %d", r.code)
	}
	created := stop()
	for _, h := range []string{doc, dev} {
		rec := s.mustNote(h, "passed")
		if !rec.Skipped {
			t.Errorf("%s was tested for real, want passed without a run", h[:7])
		}
	}
	if len(created) != 0 {
		t.Errorf("namespaces created for commits that change nothing staging renders: %v", created)
	}
	if got := s.tip("staging"); got != dev {
		t.Errorf("staging = %s, want %s", got[:7], dev[:7])
	}

	// Running again on a drained queue changes nothing.
	before := s.refs()
	stop = s.watchNamespaces()
	if r := s.runOnce(); r.code != 0 {
		t.Fatalf("third run exited %d", r.code)
	}
	if created := stop(); len(created) != 0 {
		t.Errorf("a drained queue created namespaces: %v", created)
	}
	if after := s.refs(); after != before {
		t.Errorf("a drained queue changed refs:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// Status shows the story.
	st := s.sluice(t.Context(), nil, "status")
	for _, want := range []string{"bump B to v4", "failed", "reverted by " + revert[:7]} {
		if !strings.Contains(st.stdout, want) {
			t.Errorf("status does not show %q", want)
		}
	}
	js := s.sluice(t.Context(), nil, "status", "--output", "json")
	var status struct {
		Gates []struct {
			Name    string `json:"name"`
			Queue   []any  `json:"queue"`
			History []struct {
				SHA     string `json:"sha"`
				Verdict string `json:"verdict"`
				Reason  string `json:"reason"`
			} `json:"history"`
		} `json:"gates"`
	}
	if err := json.Unmarshal([]byte(js.stdout), &status); err != nil {
		t.Fatalf("status --output json: %v\n%s", err, js.stdout)
	}
	if len(status.Gates) != 1 || status.Gates[0].Name != s.gate || len(status.Gates[0].Queue) != 0 {
		t.Errorf("status json: %+v", status)
	}
	// The kept namespace is Sluice's own, so the test may remove it.
	for _, ns := range kept {
		_ = s.kube.CoreV1().Namespaces().Delete(t.Context(), ns, metav1.DeleteOptions{})
	}
}

func pair(a, b string) []string { return []string{a, b} }

func hashes(hs []plumbing.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.String()
	}
	return out
}
