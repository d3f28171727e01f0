package reconcile

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gitops/sluice/test/gitserver"
	"github.com/sluice-gitops/sluice/testenv"
)

// outageEnv is the stand-in cluster that takes the Git server down for a
// while each time it starts testing one of the first few candidates, so
// that what follows the test (the notes push, the revert push, the next
// fetch) meets an outage.
type outageEnv struct {
	*fakeEnv
	srv     *gitserver.Server
	down    time.Duration
	outages int // how many more tests start an outage

	mu      sync.Mutex
	windows []outage
	wg      sync.WaitGroup
}

// outage is one period the server was down and the requests it refused.
type outage struct {
	commit   string
	start    time.Time
	took     time.Duration
	requests int64
}

func (e *outageEnv) Test(ctx context.Context, spec testenv.TestSpec, onStep testenv.StepFunc) (map[string]time.Duration, error) {
	e.mu.Lock()
	if e.outages > 0 {
		e.outages--
		i := len(e.windows)
		e.windows = append(e.windows, outage{commit: spec.Commit, start: time.Now()})
		before := e.srv.Requests()
		e.srv.SetAvailable(false)
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			time.Sleep(e.down)
			e.mu.Lock()
			e.srv.SetAvailable(true)
			e.windows[i].took = time.Since(e.windows[i].start)
			e.windows[i].requests = e.srv.Requests() - before
			e.mu.Unlock()
		}()
	}
	e.mu.Unlock()
	return e.fakeEnv.Test(ctx, spec, onStep)
}

// TestGitServerOutageIsRetriedNeverReverted takes the Git server down for
// three seconds twice while the queue drains, in RunOnce and in the daemon:
// right after a good commit is tested (its notes push and the fetches
// after it fail) and right after a broken commit is tested (its revert
// push fails). Each is retried with capped backoff, logged once per kind
// of error rather than per attempt, never turned into a verdict or a
// revert; when the server is back the queue finishes with the verdicts it
// would have had without the outages.
func TestGitServerOutageIsRetriedNeverReverted(t *testing.T) {
	t.Run("RunOnce", func(t *testing.T) { testGitServerOutage(t, false) })
	t.Run("Run", func(t *testing.T) { testGitServerOutage(t, true) })
}

func testGitServerOutage(t *testing.T, daemon bool) {
	const (
		down       = 3 * time.Second
		initial    = 20 * time.Millisecond
		maxBackoff = 100 * time.Millisecond
	)
	srv := gitserver.Start(t, gitserver.Options{})
	h := newHostileRepo(t, srv, "outage")
	a3 := h.push("bump A to v3", "environments/staging/a.yaml", deployment("a", "v3"))
	b4 := h.push("bump B to v4", "environments/staging/b.yaml", deployment("b", "v4"))
	a4 := h.push("bump A to v4", "environments/staging/a.yaml", deployment("a", "v4"))

	env := &outageEnv{fakeEnv: &fakeEnv{broken: []string{"b:v4"}}, srv: srv, down: down, outages: 2}
	logs := &logCapture{}
	r := h.runner(env, logs)
	g := &r.Gates[0]
	g.InitialBackoff, g.MaxBackoff, g.OnceAttempts = initial, maxBackoff, 1000
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	if daemon {
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx, 50*time.Millisecond) }()
		bare := srv.RepoDir("outage") // read on the server's disk: HTTP may be down
		for {
			main, staging := serverGit(t, bare, "rev-parse", "main"), serverGit(t, bare, "rev-parse", "staging")
			if main != a4 && main == staging && serverGit(t, bare, "log", "-1", "--notes=sluice", "--format=%N", main) != "" {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("the daemon did not drain the queue; log:\n%s", logs.text())
			}
			time.Sleep(100 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	} else if err := r.RunOnce(ctx); err != nil {
		t.Fatalf("RunOnce = %v, want nil once the server is back; log:\n%s", err, logs.text())
	}
	took := time.Since(start)
	env.wg.Wait()

	revert := h.remote("rev-parse", "origin/main")
	for _, tt := range []struct {
		name    string
		sha     string
		verdict Verdict
	}{
		{"the good commit whose notes push met the outage passes", a3, Passed},
		{"the broken commit whose revert push met the outage fails", b4, Failed},
		{"the good commit after it passes", a4, Passed},
		{"Sluice's revert passes", revert, Passed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if rec := h.record(tt.sha); Verdict(rec.Verdict) != tt.verdict {
				t.Errorf("verdict %s (%s), want %s", rec.Verdict, rec.Reason, tt.verdict)
			}
		})
	}
	if got := h.reverts(); len(got) != 1 || got[b4] != 1 {
		t.Errorf("reverts %v, want b4 (%s) reverted once and nothing else", got, b4[:7])
	}
	if got := h.remote("rev-parse", "origin/staging"); got != revert {
		t.Errorf("staging = %s, want main's tip %s", got[:7], revert[:7])
	}
	if got := h.remote("show", "origin/staging:environments/staging/a.yaml"); !strings.Contains(got, "a:v4") {
		t.Errorf("staging lost the later bump of A:\n%s", got)
	}

	env.mu.Lock()
	windows := append([]outage(nil), env.windows...)
	env.mu.Unlock()
	if len(windows) != 2 || windows[0].commit != a3 || windows[1].commit != b4 {
		t.Fatalf("outages during the tests of %v, want during a3 and b4", windows)
	}
	for _, w := range windows {
		// Capped backoff: at least one try every maxBackoff (less the time a
		// try takes on a loaded machine), and never a busy loop.
		lo, hi := int64(w.took/(4*maxBackoff)), int64(w.took/initial)+2
		if w.requests < lo || w.requests > hi {
			t.Errorf("the server refused %d requests during the %s outage after testing %s; want between %d and %d with backoff from %s capped at %s",
				w.requests, w.took.Round(time.Millisecond), w.commit[:7], lo, hi, initial, maxBackoff)
		}
	}

	warns := logs.find(slog.LevelWarn, "infrastructure error, will retry")
	for i, w := range warns {
		if i > 0 && w.Attrs["error"] == warns[i-1].Attrs["error"] {
			t.Errorf("the same error was logged twice in a row:\n%s", w.Attrs["error"])
		}
		if !strings.Contains(w.Attrs["error"], "503") && !strings.Contains(w.Attrs["error"], "Unavailable") && !strings.Contains(strings.ToLower(w.Attrs["error"]), "unavailable") {
			t.Errorf("an infrastructure error that is not the outage: %s", w.Attrs["error"])
		}
	}
	var refused int64
	for _, w := range windows {
		refused += w.requests
	}
	if len(warns) == 0 || len(warns) > 2*len(windows) {
		t.Errorf("%d warnings for %d outages, want one per kind of error (at most %d):\n%s", len(warns), len(windows), 2*len(windows), logs.text())
	}
	if int64(len(warns)) >= refused {
		t.Errorf("%d warnings for %d refused requests: logged at every attempt", len(warns), refused)
	}
	for _, w := range logs.find(slog.LevelWarn, "candidate failed") {
		if !strings.Contains(w.Attrs["reason"], "b:v4") {
			t.Errorf("a candidate failed for another reason than B v4: %s", w.Attrs["reason"])
		}
	}
	if got := len(logs.find(slog.LevelInfo, "gate recovered")); got != len(windows) {
		t.Errorf("gate recovered logged %d times, want once per outage (%d):\n%s", got, len(windows), logs.text())
	}
	t.Logf("%d outages of %s (%d requests refused) while draining for %s; %d warnings logged; %d candidates tested",
		len(windows), down, refused, took.Round(time.Millisecond), len(warns), len(env.testedCommits()))
	for _, w := range warns {
		t.Logf("warned: %s", w.Attrs["error"])
	}
}

// flakyEnv is the stand-in cluster with an infrastructure error on the
// first tests of some commits.
type flakyEnv struct {
	*fakeEnv
	mu   sync.Mutex
	errs map[string]int // commit -> tests still to end in error
}

func (e *flakyEnv) Test(ctx context.Context, spec testenv.TestSpec, onStep testenv.StepFunc) (map[string]time.Duration, error) {
	e.mu.Lock()
	n := e.errs[spec.Commit]
	if n > 0 {
		e.errs[spec.Commit] = n - 1
	}
	e.mu.Unlock()
	if n > 0 {
		return nil, errors.New("API server unreachable: connection refused")
	}
	return e.fakeEnv.Test(ctx, spec, onStep)
}

// TestRunOnceAttemptsAreCountedPerCandidate: OnceAttempts bounds how often
// `run --once` tries one candidate, not how many errors a whole queue may
// meet: three commits that each need three tries pass with OnceAttempts 3,
// and each error is logged when it starts and when it is over.
func TestRunOnceAttemptsAreCountedPerCandidate(t *testing.T) {
	f := newQueueFixture(t)
	a3 := f.push("bump A to v3", "env/a.yaml", deployment("a", "v3"))
	a4 := f.push("bump A to v4", "env/a.yaml", deployment("a", "v4"))
	a5 := f.push("bump A to v5", "env/a.yaml", deployment("a", "v5"))
	f.runner.Env = &flakyEnv{fakeEnv: f.env, errs: map[string]int{a3: 2, a4: 2, a5: 2}}
	f.runner.Gates[0].OnceAttempts = 3
	logs := &logCapture{}
	f.runner.Log = slog.New(logs)
	if err := f.runner.RunOnce(t.Context()); err != nil {
		t.Fatalf("RunOnce = %v, want nil: no candidate needed more than 3 attempts", err)
	}
	for _, sha := range []string{a3, a4, a5} {
		if rec := f.record(sha); Verdict(rec.Verdict) != Passed || rec.Attempts != 3 {
			t.Errorf("%s: verdict %s after %d attempts, want passed after 3", sha[:7], rec.Verdict, rec.Attempts)
		}
	}
	if got := f.remote("rev-parse", "origin/staging"); got != a5 {
		t.Errorf("staging = %s, want a5 %s", got[:7], a5[:7])
	}
	warns, recovered := logs.find(slog.LevelWarn, "infrastructure error, will retry"), logs.find(slog.LevelInfo, "gate recovered")
	if len(warns) != 3 || len(recovered) != 3 {
		t.Errorf("%d warnings and %d recoveries logged, want 3 of each (one per candidate):\n%s", len(warns), len(recovered), logs.text())
	}
}
