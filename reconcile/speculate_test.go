package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/reconcile/plan"
	"github.com/sluice-gitops/sluice/testenv"
)

// slowEnv is fakeEnv with tests that take a while: a candidate of the
// commit named culprit fails at once, every other one waits (or is
// cancelled) first; with together set, it also waits (up to a bound) for
// the culprit's test to have ended and another test to be running. It records the most tests running at once, the
// cancelled tests, and each finished test's commit and whether it held the
// broken image.
type slowEnv struct {
	*fakeEnv
	wait     time.Duration
	culprit  string
	together bool

	mu          sync.Mutex
	running     int
	most        int
	cancelled   int
	culpritDone bool
	namespaces  map[string]bool
	finished    []slowTest
}

type slowTest struct {
	commit string
	broken bool // the candidate held a broken image
}

func (s *slowEnv) Test(ctx context.Context, spec testenv.TestSpec, onStep testenv.StepFunc) (map[string]time.Duration, error) {
	s.mu.Lock()
	s.running++
	s.most = max(s.most, s.running)
	if s.namespaces[spec.Namespace] {
		s.mu.Unlock()
		return nil, fmt.Errorf("namespace %s used twice", spec.Namespace)
	}
	s.namespaces[spec.Namespace] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.running--
		s.mu.Unlock()
	}()
	if spec.Commit != s.culprit {
		for deadline := time.Now().Add(30 * time.Second); s.together && time.Now().Before(deadline) && ctx.Err() == nil; {
			s.mu.Lock()
			ready := s.most >= 2 && s.culpritDone
			s.mu.Unlock()
			if ready {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		select {
		case <-ctx.Done():
			s.mu.Lock()
			s.cancelled++
			s.mu.Unlock()
			return nil, ctx.Err()
		case <-time.After(s.wait):
		}
	}
	onStep(testenv.StepApply, time.Millisecond, "applied")
	d, err := s.fakeEnv.Test(ctx, spec, onStep)
	s.mu.Lock()
	s.finished = append(s.finished, slowTest{commit: spec.Commit, broken: testenv.IsFault(err)})
	s.culpritDone = s.culpritDone || spec.Commit == s.culprit
	s.mu.Unlock()
	return d, err
}

// outcome is what a drained queue left in Git, by commit subject, so that
// two repositories with the same history compare equal.
type outcome struct {
	verdicts map[string]Verdict // subject -> verdict
	reverted []string           // subjects of the rejected commits, newest first
	tree     string             // the target's tree
}

func (f *queueFixture) outcome() (outcome, map[string]gitrepo.Record) {
	f.t.Helper()
	o := outcome{verdicts: map[string]Verdict{}}
	recs := map[string]gitrepo.Record{}
	for _, line := range strings.Split(f.remote("log", "--format=%H %s", "origin/staging..origin/main"), "\n") {
		if line != "" {
			f.t.Errorf("origin/main has %q beyond staging", line)
		}
	}
	for _, line := range strings.Split(f.remote("log", "--format=%H %s", "--first-parent", "origin/main"), "\n") {
		sha, subject, _ := strings.Cut(line, " ")
		if subject == "initial" {
			break
		}
		rec := f.record(sha)
		o.verdicts[subject] = Verdict(rec.Verdict)
		recs[subject] = rec
	}
	for _, s := range strings.Split(f.remote("log", "--format=%(trailers:key=Sluice-Rejected,valueonly)", "origin/main"), "\n") {
		if s = strings.TrimSpace(s); s != "" {
			o.reverted = append(o.reverted, strings.TrimSpace(f.remote("log", "-1", "--format=%s", s)))
		}
	}
	o.tree = f.remote("rev-parse", "origin/staging^{tree}")
	return o, recs
}

// The queue a3, b4 (broken), a4 … a9 drained speculatively or in batches
// gives what one-at-a-time gating gives on the same history: the same
// verdicts, the one revert of b4, the same target tree.
func TestSpeculativeAndBatchAgreeWithSerial(t *testing.T) {
	queue := func(f *queueFixture) (culprit string) {
		f.push("bump A to v3", "env/a.yaml", deployment("a", "v3"))
		culprit = f.push("bump B to v4", "env/b.yaml", deployment("b", "v4"))
		for v := 4; v <= 9; v++ {
			f.push(fmt.Sprintf("bump A to v%d", v), "env/a.yaml", deployment("a", fmt.Sprintf("v%d", v)))
		}
		return culprit
	}
	serial := newQueueFixture(t)
	queue(serial)
	if err := serial.runner.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	want, _ := serial.outcome()
	if len(want.verdicts) != 9 || want.verdicts["bump B to v4"] != Failed || len(want.reverted) != 1 {
		t.Fatalf("serial outcome %+v: want 9 verdicts, b4 failed and reverted once", want)
	}

	tests := []struct {
		name     string
		strategy plan.Strategy
		judged   string // in the reason of a commit after the culprit
	}{
		{"speculative", plan.Speculative, "judged speculatively"},
		{"batch", plan.Batch, "judged in a batch of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newQueueFixture(t)
			culprit := queue(f)
			env := &slowEnv{fakeEnv: f.env, wait: 50 * time.Millisecond, culprit: culprit, together: tt.strategy == plan.Speculative, namespaces: map[string]bool{}}
			f.runner.Env = env
			var logs syncBuffer
			f.runner.Log = slog.New(slog.NewTextHandler(&logs, nil))
			g := &f.runner.Gates[0]
			g.Strategy, g.ParallelismMin, g.ParallelismMax = tt.strategy, 1, 4
			var mu sync.Mutex
			var events []Event
			f.runner.OnEvent = func(e Event) {
				mu.Lock()
				events = append(events, e)
				mu.Unlock()
			}
			if err := f.runner.RunOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			got, recs := f.outcome()
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("outcome\n%+v\nwant serial's\n%+v", got, want)
			}
			judged := 0
			for _, rec := range recs {
				if strings.Contains(rec.Reason, tt.judged) {
					judged++
				}
			}
			if judged == 0 {
				t.Errorf("no note says %q: %+v", tt.judged, recs)
			}
			// Every commit after the culprit was finally tested, or judged,
			// by a candidate without it.
			for v := 4; v <= 9; v++ {
				rec := recs[fmt.Sprintf("bump A to v%d", v)]
				if !rec.Candidate.IsZero() && (len(rec.Reverted) != 1 || rec.Reverted[0].String() != culprit) {
					t.Errorf("a%d's candidate was tested with %v reverted, want the culprit", v, rec.Reverted)
				}
			}
			// Each run's step events come together, ending in the verdict.
			for i := 1; i < len(events); i++ {
				if events[i].Step == testenv.StepApply && (events[i-1].Step != StepRender || events[i-1].Commit.Hash != events[i].Commit.Hash) {
					t.Errorf("event %d (%s of %s) follows %s of %s: runs' events interleave", i, events[i].Step, short(events[i].Commit.Hash), events[i-1].Step, short(events[i-1].Commit.Hash))
				}
			}
			if tt.strategy == plan.Speculative {
				if env.most < 2 {
					t.Errorf("at most %d tests ran at once, want a window", env.most)
				}
				if n := strings.Count(logs.String(), "cancelled a stale candidate"); n == 0 {
					t.Errorf("no run was cancelled: the candidates behind the culprit hold it")
				}
				reran := 0
				for _, ft := range env.finished {
					if ft.commit != culprit && !ft.broken {
						reran++
					}
				}
				if reran < 7 {
					t.Errorf("%d commits tested without the culprit, want the 7 others: %+v", reran, env.finished)
				}
			}

			// A restarted Sluice finds everything decided.
			before := f.remote("for-each-ref")
			again := f.newRunner(f.srv.RepoURL("desired"))
			again.Gates[0] = *g
			again.Env = env
			n := len(env.finished)
			if err := again.RunOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			if after := f.remote("for-each-ref"); after != before {
				t.Errorf("a second run changed refs:\n%s\n---\n%s", before, after)
			}
			if len(env.finished) != n {
				t.Errorf("a second run tested %d candidates", len(env.finished)-n)
			}
			if log := f.srv.ProtectLog(t, "desired"); log != nil {
				t.Errorf("branch protection refused pushes: %q", log)
			}
		})
	}
}

func TestRunNamespaceIsUniquePerRunAndFits(t *testing.T) {
	sha := "0123456789abcdef0123456789abcdef01234567"
	long := strings.Repeat("g", 63)
	seen := map[string]string{}
	for _, gate := range []string{"staging", long} {
		for _, key := range []string{sha, plan.Key(sha, []string{"b"}), plan.Key(sha, []string{"c"})} {
			ns := RunNamespace(gate, sha, key)
			if len(ns) > 63 || !strings.Contains(ns, "0123456") {
				t.Errorf("RunNamespace(%q, %q) = %q: want at most 63 bytes naming the commit", gate, key, ns)
			}
			if other, dup := seen[ns]; dup {
				t.Errorf("keys %q and %q share namespace %s", key, other, ns)
			}
			seen[ns] = key
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// An outage during a speculative pass ends the pass with its error, as a
// serial pass does: `run --once` gives up after OnceAttempts, nothing is
// reverted, and the next run drains the queue.
func TestSpeculativeOutageEndsRunOnce(t *testing.T) {
	f := newQueueFixture(t)
	f.push("bump A to v3", "env/a.yaml", deployment("a", "v3"))
	a4 := f.push("bump A to v4", "env/a.yaml", deployment("a", "v4"))
	g := &f.runner.Gates[0]
	g.Strategy, g.ParallelismMin, g.ParallelismMax = plan.Speculative, 1, 4
	f.env.outages = 1000
	err := f.runner.RunOnce(context.Background())
	if err == nil || !strings.Contains(err.Error(), "giving up after 5 attempts") {
		t.Fatalf("RunOnce = %v, want giving up after 5 attempts", err)
	}
	if got := f.remote("rev-parse", "origin/main"); got != a4 {
		t.Errorf("main moved to %s: an outage must never revert", got)
	}
	f.env.outages = 0
	if err := f.runner.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.remote("rev-parse", "origin/staging"); got != a4 {
		t.Errorf("staging = %s, want a4 after the outage", got)
	}
}
