package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/manifests"
	"github.com/sluice-gitops/sluice/reconcile/plan"
	"github.com/sluice-gitops/sluice/testenv"
)

// Gate is one promotion step, as the runner needs it.
type Gate struct {
	Name          string
	Path          string
	Target        string
	ClusterScoped manifests.ClusterScopedPolicy
	ApplyTimeout  time.Duration
	HealthTimeout time.Duration
	TestsTimeout  time.Duration
	KeepNamespace time.Duration
	Commands      []testenv.Command
	// ApplyConcurrency is how many objects are applied at once (0: the default).
	ApplyConcurrency int
	// Revert pushes a revert of a failed commit; when false the verdict
	// is only recorded and the commit stays out of every later candidate.
	Revert         bool
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	OnceAttempts   int
	// Strategy is how the queue is tested: "" or serial (one candidate at
	// a time), speculative or batch; each is planned by plan.Next.
	Strategy plan.Strategy
	// ParallelismMin and ParallelismMax bound the speculative window; Max
	// is also the most commits a batch holds.
	ParallelismMin, ParallelismMax int
	// ReuseEnvironment keeps a passed candidate's environment for the
	// next one, which is applied onto it as an update (testenv.TestSpec.Reuse).
	ReuseEnvironment bool
	// Env tests this gate's candidates (its own cluster); nil: Runner.Env.
	Env Tester
}

// Releaser is a Tester that keeps environments between candidates
// (Gate.ReuseEnvironment); Release removes the one kept for gate. The
// runner calls it when a gate's loop ends: a daemon stopping, a lease
// lost, a `run --once` done.
type Releaser interface {
	Release(ctx context.Context, gate string) error
}

var _ Releaser = (*testenv.Cluster)(nil)

// release removes what g's Tester keeps for g, if it keeps anything.
func (r *Runner) release(ctx context.Context, g *Gate) {
	rel, ok := r.env(g).(Releaser)
	if !ok || !g.ReuseEnvironment {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := rel.Release(ctx, g.Name); err != nil {
		r.log().Warn("could not remove the kept environment", "gate", g.Name, "error", err)
	}
}

// Tester tests one candidate in a test environment and removes leftovers.
// *Cluster is the real one.
type Tester interface {
	Test(ctx context.Context, spec testenv.TestSpec, onStep testenv.StepFunc) (map[string]time.Duration, error)
	Cleanup(ctx context.Context, gate string) ([]string, error)
}

// Event is one step of the queue, for progress output.
type Event struct {
	Gate    string
	Commit  gitrepo.Commit
	Step    string // render, apply, health, tests, commands, verdict, fast-forward, revert, cleanup, stopped
	Took    time.Duration
	Detail  string
	Verdict Verdict
	// Revert is the revert commit of a failed commit: on its "revert"
	// event, and on its "verdict" event when it was reverted (a failed
	// verdict is told after its revert is pushed).
	Revert plumbing.Hash
}

// Runner drains the queues of a set of gates over one repository.
type Runner struct {
	Repo   *gitrepo.Repository
	Source string
	Gates  []Gate
	Env    Tester
	Log    *slog.Logger
	// OnEvent, if set, is called for every step (progress lines).
	OnEvent func(Event)
	// OnDrain, if set, is called after every drain of a gate with its
	// result: nil, an error matching ErrGateStopped, or an infrastructure
	// error that will be retried. Gates drain concurrently, so it must be
	// safe for concurrent use.
	OnDrain func(gate string, err error)
	Render  manifests.RenderOptions
	// Key signs the verdict records and revert commits the runner writes,
	// and verifies those it reads: a record it cannot verify is ignored.
	// Required.
	Key *gitrepo.VerdictKey

	// Lead, if set, runs each gate's daemon loop (Run) only while this
	// process leads that gate: it calls run with a context that ends when
	// the lead is lost, and again each time the lead is won back, until ctx
	// is done. nil: every gate runs all the time.
	Lead func(ctx context.Context, gate string, run func(ctx context.Context))

	mu         sync.Mutex
	lastTarget map[string]plumbing.Hash // where this process last saw or put each target
	attempts   map[string]int           // gate/commit -> tests that ended in error
	steps      map[string]int           // gate -> verdicts, fast-forwards and reverts so far
	pushes     int                      // pushes to the source branch so far
	wakers     map[string]chan struct{} // gate -> its wake-up, while Run runs
	unverified map[string]bool          // gate/commit -> an unverifiable record was logged
	renders    map[string]rendered      // gate -> its last successful render
}

// attempt counts a test of c by gate that ended in error and returns how
// many tests of it this process has started.
func (r *Runner) attempt(gate string, c plumbing.Hash, failed bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.attempts == nil {
		r.attempts = map[string]int{}
	}
	key := gate + "/" + c.String()
	if failed {
		r.attempts[key]++
		return r.attempts[key]
	}
	return r.attempts[key] + 1
}

// env is the tester of gate g's candidates.
func (r *Runner) env(g *Gate) Tester {
	if g.Env != nil {
		return g.Env
	}
	return r.Env
}

func (r *Runner) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

func (r *Runner) emit(e Event) {
	if e.Step == "fast-forward" || e.Step == "revert" {
		r.stepped(e.Gate)
	}
	if r.OnEvent != nil {
		r.OnEvent(e)
	}
}

// stepped counts a step of gate that lasts: a verdict written, a
// fast-forward or a revert. A verdict that was not written is no step: the
// next attempt tests the commit again.
func (r *Runner) stepped(gate string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.steps == nil {
		r.steps = map[string]int{}
	}
	r.steps[gate]++
}

// progress counts the steps gate has taken: verdicts written, fast-forwards
// and reverts. An error after progress is a new error, not the last one
// again: it gets fresh attempts and backoff, and is logged.
func (r *Runner) progress(gate string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.steps[gate]
}

// RunOnce drains every gate's queue, including the revert commits it
// writes, and returns. Gates are drained at the same time, each in its own
// goroutine, so a slow gate does not hold up the others. Infrastructure
// errors are retried with backoff up to each gate's OnceAttempts, counted
// from the last step the gate took, so that each candidate gets them; a gate
// that still fails, or stops, makes RunOnce return an error after the other
// gates ran.
//
// A revert one gate pushes is new source history for the others, which may
// have drained already: they drain again, until a round pushes nothing.
func (r *Runner) RunOnce(ctx context.Context) error {
	errs := make([]error, len(r.Gates))
	active := make([]int, len(r.Gates))
	for i := range active {
		active[i] = i
	}
	for round := 0; round < maxPasses && len(active) > 0; round++ {
		before := r.sourcePushes()
		var wg sync.WaitGroup
		for _, i := range active {
			wg.Go(func() { errs[i] = r.drainOnce(ctx, &r.Gates[i]) })
		}
		wg.Wait()
		if r.sourcePushes() == before || ctx.Err() != nil {
			break
		}
		active = slices.DeleteFunc(active, func(i int) bool { return errs[i] != nil })
	}
	for i := range r.Gates {
		r.release(ctx, &r.Gates[i])
	}
	return errors.Join(errs...)
}

// pushedSource counts a push to the source branch (a revert).
func (r *Runner) pushedSource() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pushes++
}

func (r *Runner) sourcePushes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pushes
}

func (r *Runner) drainOnce(ctx context.Context, g *Gate) error {
	backoff := newBackoff(g.InitialBackoff, g.MaxBackoff)
	var last string
	for attempt := 1; ; attempt++ {
		before := r.progress(g.Name)
		err := r.drain(ctx, g)
		if attempt > 1 && r.progress(g.Name) != before && err != nil {
			// It got further before failing again: the last error is
			// over, and this one is new.
			if last != "" {
				r.log().Info("gate recovered", "gate", g.Name, "attempts", attempt)
			}
			attempt, last = 1, ""
			backoff.reset()
		}
		if err == nil {
			if last != "" {
				r.log().Info("gate recovered", "gate", g.Name, "attempts", attempt)
			}
			return nil
		}
		if errors.Is(err, ErrGateStopped) || ctx.Err() != nil {
			return err
		}
		if needsPerson(err) {
			// Retrying a refused credential or a missing repository
			// only delays the report; the daemon still retries them.
			return fmt.Errorf("gate %s: %w", g.Name, err)
		}
		if msg := err.Error(); msg != last {
			r.log().Warn("infrastructure error, will retry", "gate", g.Name, "attempt", attempt, "error", msg)
			last = msg
		}
		if attempt >= g.OnceAttempts {
			return fmt.Errorf("gate %s: giving up after %d attempts: %w", g.Name, attempt, err)
		}
		if err := sleep(ctx, backoff.next()); err != nil {
			return err
		}
	}
}

// Run is the daemon: every gate drains its queue in its own goroutine, then
// polls every interval, until ctx is done. Infrastructure errors are
// retried with capped backoff and logged once per change of state; a
// stopped gate is retried at the poll interval, since a person may have
// fixed it.
func (r *Runner) Run(ctx context.Context, interval time.Duration) error {
	var wg sync.WaitGroup
	for i := range r.Gates {
		wake := r.waker(r.Gates[i].Name)
		g := &r.Gates[i]
		if r.Lead != nil {
			wg.Go(func() { r.Lead(ctx, g.Name, func(ctx context.Context) { r.runGate(ctx, g, interval, wake) }) })
			continue
		}
		wg.Go(func() { r.runGate(ctx, g, interval, wake) })
	}
	wg.Wait()
	return nil
}

// Wake makes every gate of a running daemon drain now instead of at its
// next poll or backoff, e.g. when a forge's webhook says main moved. Wakes
// that come while a gate drains are folded into one more drain after it.
func (r *Runner) Wake() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ch := range r.wakers {
		select {
		case ch <- struct{}{}:
		default: // already due
		}
	}
}

// WakeGates is Wake for the named gates only, e.g. those this replica
// leads; a name the runner does not run is ignored.
func (r *Runner) WakeGates(gates ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, g := range gates {
		select {
		case r.wakers[g] <- struct{}{}:
		default: // already due, or not a gate
		}
	}
}

func (r *Runner) waker(gate string) chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.wakers == nil {
		r.wakers = map[string]chan struct{}{}
	}
	ch := make(chan struct{}, 1)
	r.wakers[gate] = ch
	return ch
}

func (r *Runner) runGate(ctx context.Context, g *Gate, interval time.Duration, wake <-chan struct{}) {
	defer r.release(ctx, g)
	backoff := newBackoff(g.InitialBackoff, g.MaxBackoff)
	var last string
	for {
		before := r.progress(g.Name)
		err := r.drain(ctx, g)
		if ctx.Err() != nil {
			return
		}
		if err != nil && last != "" && r.progress(g.Name) != before {
			// It got further before failing again: the last error is
			// over, and this one is new.
			r.log().Info("gate recovered", "gate", g.Name)
			last = ""
			backoff.reset()
		}
		wait := interval
		switch {
		case err == nil:
			if last != "" {
				r.log().Info("gate recovered", "gate", g.Name)
			}
			last = ""
			backoff.reset()
		case errors.Is(err, ErrGateStopped):
			if msg := err.Error(); msg != last {
				r.log().Error("gate stopped", "gate", g.Name, "reason", msg)
				last = msg
			}
		default:
			if msg := err.Error(); msg != last {
				r.log().Warn("infrastructure error, will retry", "gate", g.Name, "error", msg)
				last = msg
			}
			wait = backoff.next()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// drain is Drain, reported to OnDrain unless ctx ended it.
func (r *Runner) drain(ctx context.Context, g *Gate) error {
	err := r.Drain(ctx, g)
	if r.OnDrain != nil && ctx.Err() == nil {
		r.OnDrain(g.Name, err)
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// backoff doubles from initial up to max.
type backoff struct {
	initial, max, cur time.Duration
}

func newBackoff(initial, max time.Duration) *backoff {
	if initial <= 0 {
		initial = time.Second
	}
	if max < initial {
		max = initial
	}
	return &backoff{initial: initial, max: max}
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.initial
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

// needsPerson reports an infrastructure error that no retry fixes: the Git
// server refused the credentials, its SSH host key is not trusted, or it
// does not have the repository.
func needsPerson(err error) bool {
	return errors.Is(err, gitrepo.ErrAuth) || errors.Is(err, gitrepo.ErrHostKey) ||
		errors.Is(err, gitrepo.ErrRepositoryNotFound)
}
