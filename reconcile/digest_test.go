package reconcile

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/reconcile/plan"
	"github.com/sluice-gitops/sluice/testenv"
)

// countingEnv is fakeEnv whose tests take wait (or until cancelled), and
// that counts every call of Test, cancelled ones included: the namespaces
// a pass spent.
type countingEnv struct {
	*fakeEnv
	wait time.Duration

	mu    sync.Mutex
	calls map[string]int // commit -> Test calls
}

func (e *countingEnv) Test(ctx context.Context, spec testenv.TestSpec, onStep testenv.StepFunc) (map[string]time.Duration, error) {
	e.mu.Lock()
	e.calls[spec.Commit]++
	e.mu.Unlock()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(e.wait):
	}
	return e.fakeEnv.Test(ctx, spec, onStep)
}

func (e *countingEnv) total() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, c := range e.calls {
		n += c
	}
	return n
}

// TestSpeculativeTestsEachRenderingOnce: runs in one speculative window
// whose candidates render the same objects are tested once, by the first
// of them in queue order, as one-at-a-time gating would; the others wait
// for its verdict and take it without a test (and without a namespace).
func TestSpeculativeTestsEachRenderingOnce(t *testing.T) {
	type commit struct {
		subject, path, content string
		verdict                Verdict
		skipped                bool
	}
	bump := func(v string, verdict Verdict) commit {
		return commit{"bump A to " + v, "env/a.yaml", deployment("a", v), verdict, false}
	}
	docs := func(n int, skipped bool) commit {
		return commit{fmt.Sprintf("docs %d", n), "README.md", fmt.Sprintf("edit %d\n", n), Passed, skipped}
	}
	tests := []struct {
		name  string
		queue []commit
		tests int // Test calls
		// loose: which of the runs of one rendering is tested may differ
		// from queue order (a known gap: a run restarted behind another
		// can claim the digest first); the verdicts, the number of tests
		// and of reuses must not.
		loose bool
	}{
		{"a doc commit behind a bump", []commit{bump("v3", Passed), docs(1, true)}, 1, false},
		{"doc commits behind a bump", []commit{bump("v3", Passed), docs(1, true), docs(2, true), docs(3, true)}, 1, false},
		{"two bumps, each with docs behind it", []commit{bump("v3", Passed), docs(1, true), bump("v4", Passed), docs(2, true)}, 2, true},
		// docs 1's first run holds b4 and waits for b4's verdict rather
		// than testing b4's objects again; its run without b4 is tested,
		// and b4's revert renders what that run tested.
		{"a doc commit behind a broken bump", []commit{{"bump B to v4", "env/b.yaml", deployment("b", "v4"), Failed, false}, docs(1, false)}, 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newQueueFixture(t)
			env := &countingEnv{fakeEnv: f.env, wait: time.Second, calls: map[string]int{}}
			f.runner.Env = env
			g := &f.runner.Gates[0]
			g.Strategy, g.ParallelismMin, g.ParallelismMax = plan.Speculative, 1, 4
			var shas []string
			for _, c := range tt.queue {
				shas = append(shas, f.push(c.subject, c.path, c.content))
			}
			if err := f.runner.RunOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			skipped, wantSkipped := 0, 0
			for i, c := range tt.queue {
				rec := f.record(shas[i])
				if rec.Skipped {
					skipped++
				}
				if c.skipped {
					wantSkipped++
				}
				if Verdict(rec.Verdict) != c.verdict || (!tt.loose && rec.Skipped != c.skipped) {
					t.Errorf("%s: %s, skipped %v; want %s, skipped %v (%s)", c.subject, rec.Verdict, rec.Skipped, c.verdict, c.skipped, rec.Reason)
				}
			}
			if skipped != wantSkipped {
				t.Errorf("%d verdicts reused without a test, want %d", skipped, wantSkipped)
			}
			if got := env.total(); got != tt.tests {
				t.Errorf("%d tests ran, want %d: %v", got, tt.tests, env.calls)
			}
		})
	}
}

// TestDigestCacheJudgesInQueueOrder: the run at a queue position waits
// until every run ahead of it has rendered; the first in queue order to
// render a digest tests it, and the runs behind it that render the same
// wait for its verdict. A run that renders something else waits for no
// test, and a test that ends without a verdict hands the digest on.
func TestDigestCacheJudgesInQueueOrder(t *testing.T) {
	ctx := context.Background()
	passed := gitrepo.Record{Verdict: string(Passed), Digest: "D"}
	type judged struct {
		rec     gitrepo.Record
		found   bool
		release func(gitrepo.Record)
		err     error
	}
	judge := func(ctx context.Context, t *renderTicket, digest string) <-chan judged {
		ch := make(chan judged, 1)
		go func() {
			var j judged
			j.rec, j.found, j.release, j.err = t.judge(ctx, digest)
			ch <- j
		}()
		return ch
	}
	// pending fails if ch delivers within a moment: it must be waiting.
	pending := func(t *testing.T, ch <-chan judged, what string) {
		t.Helper()
		select {
		case j := <-ch:
			t.Fatalf("%s did not wait: %+v", what, j)
		case <-time.After(50 * time.Millisecond):
		}
	}

	t.Run("the run behind waits for the render and the test ahead", func(t *testing.T) {
		c := newDigestCache()
		first, second := c.starting(0), c.starting(1)
		behind := judge(ctx, second, "D")
		pending(t, behind, "the run behind, while the run ahead renders")
		rec, found, release, err := first.judge(ctx, "D")
		if err != nil || found {
			t.Fatalf("the run ahead: found %v (%+v), %v; want to claim D", found, rec, err)
		}
		pending(t, behind, "the run behind, while the run ahead tests D")
		release(passed)
		if j := <-behind; j.err != nil || !j.found || j.rec.Verdict != string(Passed) {
			t.Errorf("the run behind: %+v, want D's verdict", j)
		}
	})
	t.Run("a run ahead that renders nothing lets the run behind claim", func(t *testing.T) {
		c := newDigestCache()
		first, second := c.starting(0), c.starting(1)
		behind := judge(ctx, second, "D")
		pending(t, behind, "the run behind, while the run ahead renders")
		first.rendered()
		first.rendered()
		if j := <-behind; j.err != nil || j.found || j.release == nil {
			t.Errorf("the run behind: %+v, want to claim D", j)
		}
	})
	t.Run("another digest waits for no test", func(t *testing.T) {
		c := newDigestCache()
		first, second := c.starting(0), c.starting(1)
		if _, found, _, err := first.judge(ctx, "D"); err != nil || found {
			t.Fatalf("the run ahead: found %v, %v", found, err)
		}
		j := <-judge(ctx, second, "E")
		if j.err != nil || j.found || j.release == nil {
			t.Errorf("the run behind: %+v, want to claim E at once", j)
		}
	})
	t.Run("a test without a verdict hands the digest on", func(t *testing.T) {
		c := newDigestCache()
		first, second := c.starting(0), c.starting(1)
		_, _, release, err := first.judge(ctx, "D")
		if err != nil {
			t.Fatal(err)
		}
		behind := judge(ctx, second, "D")
		pending(t, behind, "the run behind, while D is tested")
		release(gitrepo.Record{Verdict: string(Error), Digest: "D"})
		if j := <-behind; j.err != nil || j.found || j.release == nil {
			t.Errorf("the run behind: %+v, want to claim D", j)
		}
	})
	t.Run("a cancelled wait", func(t *testing.T) {
		c := newDigestCache()
		c.starting(0)
		second := c.starting(1)
		cctx, cancel := context.WithCancel(ctx)
		behind := judge(cctx, second, "D")
		pending(t, behind, "the run behind, while the run ahead renders")
		cancel()
		if j := <-behind; !errors.Is(j.err, context.Canceled) {
			t.Errorf("the run behind: %+v, want cancelled", j)
		}
	})
}
