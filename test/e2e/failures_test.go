package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEachFailureKindIsFailedWithItsCause queues four broken commits, each
// broken in its own way, and checks each is rejected with a reason that
// names the cause, then reverted; staging ends where it started.
func TestEachFailureKindIsFailedWithItsCause(t *testing.T) {
	s := newScenario(t, scenarioOptions{health: "15s"})
	initial := s.tip("main")
	kust := s.file("main", "environments/staging/kustomization.yaml")

	render := s.push("Berlin", "add a test that does not exist",
		"environments/staging/kustomization.yaml", strings.Replace(kust, "  - tests/z-checks-a.yaml\n", "  - tests/z-checks-a.yaml\n  - tests/does-not-exist.yaml\n", 1))
	_, a := version("a", "v3")
	api := s.push("Berlin", "scale A to minus one",
		"environments/staging/versions/a.yaml", strings.Replace(a, "spec:\n  template:", "spec:\n  replicas: -1\n  template:", 1))
	_, z := version("z", "v1")
	health := s.push("New York", "Z v1 that never becomes ready",
		"environments/staging/versions/z.yaml", strings.Replace(z, "  template:\n    spec:", "  template:\n    metadata:\n      annotations:\n        sluice.dev/simulate: never-ready\n    spec:", 1))
	tests := s.push("London", "bump B to v4", pair(version("b", "v4"))...)

	if r := s.runOnce(); r.code != 0 {
		t.Fatalf("sluice run --once exited %d", r.code)
	}
	cases := []struct {
		name   string
		commit string
		want   []string
	}{
		{"a render error names the kustomization and the missing file", render, []string{"render", "environments/staging", "does-not-exist.yaml"}},
		{"an API rejection gives the server's message", api, []string{"rejected by the API server", "replicas"}},
		{"not healthy in time names the object", health, []string{"not healthy within 15s", "Deployment", "/z"}},
		{"a failing test Job names the test", tests, []string{"tests", "a-checks-b", "failed"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := s.mustNote(tc.commit, "failed")
			for _, w := range tc.want {
				if !strings.Contains(rec.Reason, w) {
					t.Errorf("reason does not contain %q:\n%s", w, rec.Reason)
				}
			}
			if rec.RevertCommit.IsZero() {
				t.Errorf("no revert recorded")
			}
		})
	}
	// Four reverts on main; staging at the last, with the tree it started with.
	log := strings.Fields(s.git("log", "--format=%H", tests+"..main"))
	if len(log) != 4 {
		t.Fatalf("main has %d commits after the last broken one, want 4 reverts", len(log))
	}
	if got := s.tip("staging"); got != s.tip("main") {
		t.Errorf("staging = %s, want main's tip %s", got[:7], s.tip("main")[:7])
	}
	if diff := s.git("diff", initial, "staging", "--", "environments/staging"); diff != "" {
		t.Errorf("staging differs from where it started:\n%s", diff)
	}
}

// TestRevertConflictStopsTheGate: B v4 fails, but B v5 was pushed on top of
// it before Sluice got there, on the same line: reverting B v4 conflicts.
// The gate stops with a clear message and changes nothing.
func TestRevertConflictStopsTheGate(t *testing.T) {
	s := newScenario(t, scenarioOptions{})
	b4 := s.push("London", "bump B to v4", pair(version("b", "v4"))...)
	s.push("London", "bump B to v5", pair(version("b", "v5"))...)
	before := s.refs()

	r := s.runOnce()
	if r.code == 0 {
		t.Fatal("sluice run --once exited 0, want an error for the stopped gate")
	}
	for _, want := range []string{"stopped", b4[:7], "conflict", "environments/staging/versions/b.yaml"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not contain %q", want)
		}
	}
	if after := s.refs(); after != before {
		t.Errorf("refs changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestInfrastructureErrorIsRetriedNotReverted stops the API server while a
// candidate is being tested: the verdict is error, Sluice retries, and
// when the server is back the commit passes; nothing is reverted.
func TestInfrastructureErrorIsRetriedNotReverted(t *testing.T) {
	// A host command keeps the candidate busy for a few seconds and says
	// when it starts, so the outage below lands in the middle of the
	// candidate however fast the cluster is: the API server is away when
	// the command ends and Sluice needs it again. (Waiting for the
	// namespace instead let the outage land in the health wait, which
	// rides out a short outage, and then nothing was an error.)
	marker := filepath.Join(t.TempDir(), "soaking")
	s := newScenario(t, scenarioOptions{onceAttempts: 30,
		extraGate: fmt.Sprintf("    tests:\n      commands:\n        - {name: soak, command: [/bin/sh, -c, %q]}\n", "if [ ! -e "+marker+" ]; then touch "+marker+"; sleep 4; fi")})
	a3 := s.push("Berlin", "bump A to v3", pair(version("a", "v3"))...)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	done := make(chan result, 1)
	go func() { done <- s.sluice(ctx, nil, "run", "--once") }()

	// Wait for the candidate's host command, then take the API server away.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if _, err := os.Stat(marker); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the candidate's host command did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := s.cluster.StopComponent(ctx, "kube-apiserver"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * time.Second)
	if err := s.cluster.StartComponent(ctx, "kube-apiserver"); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.code != 0 {
		t.Fatalf("sluice run --once exited %d after the API server came back", r.code)
	}
	if !strings.Contains(r.stderr, "infrastructure error, will retry") {
		t.Errorf("the outage was not reported as an infrastructure error")
	}
	if n := strings.Count(r.stderr, "infrastructure error, will retry"); n > 3 {
		t.Errorf("the outage was logged %d times, want once per change of state", n)
	}
	s.mustNote(a3, "passed")
	if got := s.tip("main"); got != a3 {
		t.Errorf("main moved to %s: nothing may be reverted for an outage", got[:7])
	}
	if got := s.tip("staging"); got != a3 {
		t.Errorf("staging = %s, want %s", got[:7], a3[:7])
	}
}
