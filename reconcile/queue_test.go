package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/test/gitserver"
	"github.com/sluice-gitops/sluice/testenv"
)

// fakeEnv stands in for the cluster so the queue's decisions can be tested
// fast; the Git side is real (test/gitserver). A candidate fails when it
// deploys an image listed in broken, and errors while outages > 0.
type fakeEnv struct {
	mu      sync.Mutex
	broken  []string
	outages int
	tested  []string // commits tested, in order
}

func (f *fakeEnv) Test(_ context.Context, spec testenv.TestSpec, onStep testenv.StepFunc) (map[string]time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.outages > 0 {
		f.outages--
		return nil, errors.New("API server unreachable: connection refused")
	}
	f.tested = append(f.tested, spec.Commit)
	for _, o := range spec.Objects {
		images, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		for _, c := range images {
			img, _ := c.(map[string]any)["image"].(string)
			for _, b := range f.broken {
				if strings.HasSuffix(img, b) {
					return map[string]time.Duration{testenv.StepApply: time.Millisecond}, faultf(testenv.StepTests, "test Job/a-checks-b failed: %s is incompatible", img)
				}
			}
		}
	}
	return map[string]time.Duration{testenv.StepApply: time.Millisecond}, nil
}

func (f *fakeEnv) Cleanup(context.Context, string) ([]string, error) { return nil, nil }

func (f *fakeEnv) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.tested)
}

const kustomization = `resources:
  - a.yaml
  - b.yaml
`

func deployment(name, tag string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %s
spec:
  selector: {matchLabels: {app: %s}}
  template:
    metadata: {labels: {app: %s}}
    spec:
      containers:
        - name: %s
          image: example.com/%s:%s
`, name, name, name, name, name, tag)
}

type queueFixture struct {
	t      *testing.T
	srv    *gitserver.Server
	work   *gitserver.Work
	env    *fakeEnv
	runner *Runner
}

func newQueueFixture(t *testing.T) *queueFixture {
	t.Helper()
	srv := gitserver.Start(t, gitserver.Options{})
	url := srv.CreateRepo(t, "desired")
	w := srv.Clone(t, "desired")
	w.Write(t, "env/kustomization.yaml", kustomization)
	w.Write(t, "env/a.yaml", deployment("a", "v2"))
	w.Write(t, "env/b.yaml", deployment("b", "v3"))
	w.Commit(t, "initial")
	if err := w.Push(t, "HEAD:refs/heads/main", "HEAD:refs/heads/staging"); err != nil {
		t.Fatal(err)
	}
	srv.InstallHook(t, "desired", "pre-receive", gitserver.ProtectBranches("main", "staging"))
	f := &queueFixture{t: t, srv: srv, work: w, env: &fakeEnv{broken: []string{"b:v4"}}}
	f.runner = f.newRunner(url)
	return f
}

func (f *queueFixture) newRunner(url string) *Runner {
	repo, err := gitrepo.Open(context.Background(), gitrepo.Options{URL: url, Author: gitrepo.Signature{Name: "Sluice", Email: "sluice@example.com"}})
	if err != nil {
		f.t.Fatal(err)
	}
	return &Runner{
		Repo:   repo,
		Source: "main",
		Gates: []Gate{{
			Name: "staging", Path: "env", Target: "staging", Revert: true,
			ApplyTimeout: time.Minute, HealthTimeout: time.Minute, TestsTimeout: time.Minute,
			InitialBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, OnceAttempts: 5,
		}},
		Env: f.env,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Key: testKey,
	}
}

func (f *queueFixture) push(msg, path, content string) string {
	f.t.Helper()
	f.work.Pull(f.t)
	f.work.Write(f.t, path, content)
	sha := f.work.Commit(f.t, msg)
	if err := f.work.Push(f.t, "HEAD:refs/heads/main"); err != nil {
		f.t.Fatal(err)
	}
	return sha
}

func (f *queueFixture) remote(args ...string) string {
	f.t.Helper()
	f.work.Git(f.t, "fetch", "-q", "origin", "+refs/heads/*:refs/remotes/origin/*", "+refs/notes/*:refs/notes/*")
	return strings.TrimSpace(f.work.Git(f.t, args...))
}

func (f *queueFixture) record(sha string) gitrepo.Record {
	f.t.Helper()
	n, err := gitrepo.DecodeNote([]byte(f.remote("notes", "--ref=sluice", "show", sha)))
	if err != nil {
		f.t.Fatal(err)
	}
	rec, ok := n.Get("staging")
	if !ok {
		f.t.Fatalf("no staging record on %s", sha[:7])
	}
	return rec
}

func TestQueueArticleScenario(t *testing.T) {
	f := newQueueFixture(t)
	a3 := f.push("bump A to v3", "env/a.yaml", deployment("a", "v3"))
	b4 := f.push("bump B to v4", "env/b.yaml", deployment("b", "v4"))
	doc := f.push("docs", "README.md", "hello\n")
	a4 := f.push("bump A to v4", "env/a.yaml", deployment("a", "v4"))

	if err := f.runner.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	revert := f.remote("rev-parse", "origin/main")
	tests := []struct {
		name    string
		sha     string
		verdict Verdict
		skipped bool
	}{
		{"a good bump passes", a3, Passed, false},
		{"the breaking bump fails", b4, Failed, false},
		{"a commit that changes no rendered object passes without a run", doc, Passed, true},
		{"a later bump is tested without the rejected one and passes", a4, Passed, false},
		{"the revert renders what was already tested and passes without a run", revert, Passed, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := f.record(tt.sha)
			if Verdict(rec.Verdict) != tt.verdict || rec.Skipped != tt.skipped {
				t.Errorf("verdict %s skipped %v, want %s skipped %v (reason %q)", rec.Verdict, rec.Skipped, tt.verdict, tt.skipped, rec.Reason)
			}
		})
	}
	if rec := f.record(b4); rec.RevertCommit.String() != revert {
		t.Errorf("b4's revert = %s, want main's tip %s", rec.RevertCommit, revert)
	}
	if rec := f.record(a4); len(rec.Reverted) != 1 || rec.Reverted[0].String() != b4 {
		t.Errorf("a4 tested with %v reverted, want [b4]", rec.Reverted)
	}
	if got := f.remote("rev-parse", "origin/staging"); got != revert {
		t.Errorf("staging = %s, want the revert %s", got, revert)
	}
	if got := f.remote("show", "origin/staging:env/a.yaml"); !strings.Contains(got, "a:v4") {
		t.Errorf("staging lost the later bump of A:\n%s", got)
	}
	if got := f.env.calls(); got != 3 {
		t.Errorf("%d candidates ran, want 3 (a3, b4, a4)", got)
	}

	// A restarted Sluice (a new runner, a new local clone) resumes from the
	// notes: nothing is tested, pushed or reverted again.
	before := f.remote("for-each-ref")
	again := f.newRunner(f.srv.RepoURL("desired"))
	if err := again.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if after := f.remote("for-each-ref"); after != before {
		t.Errorf("a second run changed refs:\n%s\n---\n%s", before, after)
	}
	if got := f.env.calls(); got != 3 {
		t.Errorf("a second run tested %d more candidates", got-3)
	}
}

func TestQueueInfrastructureErrorIsRetriedNeverReverted(t *testing.T) {
	f := newQueueFixture(t)
	a3 := f.push("bump A to v3", "env/a.yaml", deployment("a", "v3"))
	f.env.outages = 2
	if err := f.runner.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rec := f.record(a3); Verdict(rec.Verdict) != Passed || rec.Attempts != 3 {
		t.Errorf("verdict %s after %d attempts, want passed after 3", rec.Verdict, rec.Attempts)
	}
	if got := f.remote("rev-parse", "origin/main"); got != a3 {
		t.Errorf("main moved to %s: an outage must never revert", got)
	}

	// Past OnceAttempts, --once gives up with an error and still reverts nothing.
	a4 := f.push("bump A to v4", "env/a.yaml", deployment("a", "v4"))
	f.env.outages = 100
	err := f.runner.RunOnce(context.Background())
	if err == nil || !strings.Contains(err.Error(), "giving up after 5 attempts") {
		t.Fatalf("RunOnce = %v, want giving up after 5 attempts", err)
	}
	if got := f.remote("rev-parse", "origin/main"); got != a4 {
		t.Errorf("main moved to %s", got)
	}
	// The note says why a4 waits, written once for the five attempts with
	// the same reason, not once per attempt.
	rec := f.record(a4)
	if Verdict(rec.Verdict) != Error || !strings.Contains(rec.Reason, "API server unreachable") || rec.Attempts != 1 {
		t.Errorf("a4's record = %s (attempt %d): %q, want error naming the unreachable API server, from attempt 1", rec.Verdict, rec.Attempts, rec.Reason)
	}
	if n := strings.Count(f.remote("log", "--format=%s", "refs/notes/sluice"), a4); n != 1 {
		t.Errorf("a4's note was written %d times during the outage, want once", n)
	}
	// When the cluster is back, the next run tests a4 again and its verdict
	// replaces the error.
	f.env.outages = 0
	if err := f.runner.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rec := f.record(a4); Verdict(rec.Verdict) != Passed {
		t.Errorf("a4's record after the outage = %s, want passed", rec.Verdict)
	}
	if got := f.remote("rev-parse", "origin/staging"); got != a4 {
		t.Errorf("staging = %s, want a4 after the outage", got)
	}
}

func TestQueueStopsWhenTargetMovedOutsideSluice(t *testing.T) {
	f := newQueueFixture(t)
	f.push("bump A to v3", "env/a.yaml", deployment("a", "v3"))
	if err := f.runner.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Someone fast-forwards staging by hand to an untested commit.
	a4 := f.push("bump A to v4", "env/a.yaml", deployment("a", "v4"))
	if err := f.work.Push(t, a4+":refs/heads/staging"); err != nil {
		t.Fatal(err)
	}
	f.push("bump A to v5", "env/a.yaml", deployment("a", "v5"))
	err := f.runner.RunOnce(context.Background())
	var stopped *StoppedError
	if !errors.As(err, &stopped) || !strings.Contains(err.Error(), "moved outside Sluice") {
		t.Fatalf("RunOnce = %v, want the gate stopped because staging moved", err)
	}
	if got := f.remote("rev-parse", "origin/staging"); got != a4 {
		t.Errorf("staging = %s, want it left at %s", got, a4)
	}
}

func TestQueueStopsWhenTargetIsNotAnAncestor(t *testing.T) {
	f := newQueueFixture(t)
	// staging gets a commit main does not have.
	f.work.Git(t, "checkout", "-q", "-b", "hotfix")
	f.work.Write(t, "HOTFIX", "x\n")
	f.work.Commit(t, "hotfix on staging")
	if err := f.work.Push(t, "HEAD:refs/heads/staging"); err != nil {
		t.Fatal(err)
	}
	f.work.Git(t, "checkout", "-q", "main")
	err := f.runner.RunOnce(context.Background())
	if !errors.Is(err, ErrGateStopped) || !strings.Contains(err.Error(), "not an ancestor") {
		t.Fatalf("RunOnce = %v, want stopped: not an ancestor", err)
	}
}

func TestQueuePersonsRevertEndsThePending(t *testing.T) {
	f := newQueueFixture(t)
	f.runner.Gates[0].Revert = false // only record; a person reverts
	b4 := f.push("bump B to v4", "env/b.yaml", deployment("b", "v4"))
	a3 := f.push("bump A to v3", "env/a.yaml", deployment("a", "v3"))
	if err := f.runner.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.remote("rev-parse", "origin/staging"); got == a3 {
		t.Fatalf("staging moved to a3 while b4 is still in its tree")
	}
	f.work.Pull(t)
	f.work.Git(t, "revert", "--no-edit", b4)
	if err := f.work.Push(t, "HEAD:refs/heads/main"); err != nil {
		t.Fatal(err)
	}
	if err := f.runner.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, main := f.remote("rev-parse", "origin/staging"), f.remote("rev-parse", "origin/main"); got != main {
		t.Errorf("staging = %s, want main %s after the person's revert", got, main)
	}
}

func TestReasonFromRevertRoundTrips(t *testing.T) {
	c := gitrepo.Commit{Hash: plumbing.NewHash("0123456789abcdef0123456789abcdef01234567"), Subject: "bump B to v4"}
	reason := "tests: test Job/a-checks-b failed: BackoffLimitExceeded\npod a-checks-b-x: container check exited with code 1"
	if got := reasonFromRevert(gitrepo.RevertMessage(c, "staging", reason)); got != reason {
		t.Errorf("reasonFromRevert = %q, want %q", got, reason)
	}
}

func TestBackoffDoublesUpToTheCap(t *testing.T) {
	b := newBackoff(time.Second, 5*time.Second)
	var got []time.Duration
	for range 5 {
		got = append(got, b.next())
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("backoff = %v, want %v", got, want)
	}
}

// overlapEnv runs candidates through fakeEnv, but first lets each test wait
// (up to a bound) for a test of another gate to be running, and records the
// most tests it saw running at once.
type overlapEnv struct {
	*fakeEnv
	mu      sync.Mutex
	running int
	most    int
}

func (o *overlapEnv) Test(ctx context.Context, spec testenv.TestSpec, onStep testenv.StepFunc) (map[string]time.Duration, error) {
	o.mu.Lock()
	o.running++
	o.most = max(o.most, o.running)
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.running--
		o.mu.Unlock()
	}()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		o.mu.Lock()
		together := o.most >= 2
		o.mu.Unlock()
		if together {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return o.fakeEnv.Test(ctx, spec, onStep)
}

// Two gates over the same queue drain at the same time. Both reject b4:
// it is reverted once, each gate records its own verdicts on every commit
// (no gate loses the other's), and both targets end at the revert.
func TestQueueGatesDrainConcurrently(t *testing.T) {
	f := newQueueFixture(t)
	f.work.Pull(t)
	if err := f.work.Push(t, "HEAD:refs/heads/shared-dev"); err != nil {
		t.Fatal(err)
	}
	f.srv.InstallHook(t, "desired", "pre-receive", gitserver.ProtectBranches("main", "staging", "shared-dev"))
	a3 := f.push("bump A to v3", "env/a.yaml", deployment("a", "v3"))
	b4 := f.push("bump B to v4", "env/b.yaml", deployment("b", "v4"))
	a4 := f.push("bump A to v4", "env/a.yaml", deployment("a", "v4"))

	env := &overlapEnv{fakeEnv: f.env}
	f.runner.Env = env
	dev := f.runner.Gates[0]
	dev.Name, dev.Target = "shared-dev", "shared-dev"
	f.runner.Gates = append(f.runner.Gates, dev)
	var mu sync.Mutex
	var reverts []Event
	f.runner.OnEvent = func(e Event) {
		if e.Step == "revert" {
			mu.Lock()
			reverts = append(reverts, e)
			mu.Unlock()
		}
	}
	if err := f.runner.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}

	if env.most < 2 {
		t.Errorf("at most %d candidates were tested at once, want the two gates' together", env.most)
	}
	revert := f.remote("rev-parse", "origin/main")
	if got := f.remote("log", "--format=%(trailers:key=Sluice-Rejected,valueonly)", "origin/main"); strings.Count(got, b4) != 1 {
		t.Errorf("b4 was reverted %d times, want once; rejections on main:\n%s", strings.Count(got, b4), got)
	}
	if len(reverts) != 2 {
		t.Errorf("%d revert steps, want one per gate (one pushed, one finding it): %+v", len(reverts), reverts)
	}
	for _, gate := range []string{"staging", "shared-dev"} {
		if got := f.remote("rev-parse", "origin/"+gate); got != revert {
			t.Errorf("%s = %s, want the revert %s", gate, got, revert)
		}
		for sha, want := range map[string]Verdict{a3: Passed, b4: Failed, a4: Passed, revert: Passed} {
			n, err := gitrepo.DecodeNote([]byte(f.remote("notes", "--ref=sluice", "show", sha)))
			if err != nil {
				t.Fatal(err)
			}
			rec, ok := n.Get(gate)
			if !ok || Verdict(rec.Verdict) != want {
				t.Errorf("%s's record on %s = %+v (found %t), want %s", gate, sha[:7], rec, ok, want)
			}
			if sha == b4 && rec.RevertCommit.String() != revert {
				t.Errorf("%s's record on b4 names revert %s, want %s", gate, rec.RevertCommit, revert)
			}
		}
	}
	if log := f.srv.ProtectLog(t, "desired"); log != nil {
		t.Errorf("branch protection refused pushes: %q", log)
	}
}

// TestQueueRepeatedTestIsNoProgress: a failed commit whose revert cannot be
// pushed (the source branch refuses Sluice) is an infrastructure error. Each
// attempt tests the commit again, but a test that writes nothing is no
// progress: `run --once` gives up after OnceAttempts instead of retesting it
// without end and without backoff.
func TestQueueRepeatedTestIsNoProgress(t *testing.T) {
	f := newQueueFixture(t)
	f.push("bump B to v4", "env/b.yaml", deployment("b", "v4"))
	f.srv.InstallHook(t, "desired", "pre-receive", "#!/bin/sh\nwhile read old new ref; do\n  if [ \"$ref\" = refs/heads/main ]; then echo 'main is frozen' >&2; exit 1; fi\ndone\n")
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	err := f.runner.RunOnce(ctx)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("RunOnce = %v (context: %v), want it to give up with the push's error", err, ctx.Err())
	}
	if !strings.Contains(err.Error(), "giving up after 5 attempts") {
		t.Errorf("RunOnce = %v, want it to give up after the gate's 5 attempts", err)
	}
	if n := f.env.calls(); n > 5 {
		t.Errorf("the broken commit was tested %d times, want at most one test per attempt (5)", n)
	}
}

// liveEnv is fakeEnv whose test, after its apply step, waits (up to a
// bound) until the runner has emitted that step's progress event.
type liveEnv struct {
	*fakeEnv
	seen chan string // commits whose apply event was emitted
}

func (l *liveEnv) Test(ctx context.Context, spec testenv.TestSpec, onStep testenv.StepFunc) (map[string]time.Duration, error) {
	onStep(testenv.StepApply, time.Millisecond, "applied")
	select {
	case c := <-l.seen:
		if c != spec.Commit {
			return nil, fmt.Errorf("apply event of %s while testing %s", c[:7], spec.Commit[:7])
		}
	case <-time.After(10 * time.Second):
		return nil, fmt.Errorf("the apply event of %s was not emitted while its test ran", spec.Commit[:7])
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return l.fakeEnv.Test(ctx, spec, onStep)
}

// A serial gate tests one candidate at a time, so its progress lines are
// shown as they happen: a 40-minute test shows its steps during the 40
// minutes, not after its verdict.
func TestSerialProgressIsLive(t *testing.T) {
	f := newQueueFixture(t)
	a3 := f.push("bump A to v3", "env/a.yaml", deployment("a", "v3"))
	b4 := f.push("bump B to v4", "env/b.yaml", deployment("b", "v4"))
	env := &liveEnv{fakeEnv: f.env, seen: make(chan string, 10)}
	f.runner.Env = env
	var mu sync.Mutex
	var steps []string
	f.runner.OnEvent = func(e Event) {
		if e.Step == testenv.StepApply {
			env.seen <- e.Commit.Hash.String()
		}
		mu.Lock()
		defer mu.Unlock()
		steps = append(steps, short(e.Commit.Hash)+" "+e.Step+" "+string(e.Verdict))
	}
	if err := f.runner.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{
		a3[:7] + " render ", a3[:7] + " apply ", a3[:7] + " verdict passed", a3[:7] + " fast-forward ",
		b4[:7] + " render ", b4[:7] + " apply ", b4[:7] + " revert ", b4[:7] + " verdict failed", // told with its revert
	}
	mu.Lock()
	defer mu.Unlock()
	if len(steps) < len(want) || fmt.Sprint(steps[:len(want)]) != fmt.Sprint(want) {
		t.Errorf("events\n%q\nwant them to start with\n%q", steps, want)
	}
}
