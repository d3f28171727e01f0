package reconcile

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/reconcile/plan"
)

// maxPasses bounds one Drain: each pass either finishes the queue or
// pushed a revert that the next pass has to test.
const maxPasses = 100

// Drain tests gate g's queue until every queued commit has a verdict, the
// revert commits it pushed included. It returns an infrastructure error to
// be retried, or a *StoppedError that needs a person.
func (r *Runner) Drain(ctx context.Context, g *Gate) error {
	for i := 0; i < maxPasses; i++ {
		again, err := r.pass(ctx, g)
		if err != nil || !again {
			return err
		}
	}
	return fmt.Errorf("gate %s: queue not drained after %d passes", g.Name, maxPasses)
}

// pass is one walk over gate g's queue, whatever its strategy: it lists
// the queue and the verdicts Git holds, then carries out plan.Next step by
// step. It reports whether another pass must follow: a revert it pushed
// sits on source commits it has not listed.
func (r *Runner) pass(ctx context.Context, g *Gate) (again bool, err error) {
	p, err := r.newPass(ctx, g)
	if err != nil || p == nil {
		return false, err
	}
	defer p.stopAll()
	return p.run(ctx)
}

// newPass fetches and lists gate g's queue, removes leftover namespaces,
// and builds the planner's state from Git alone: the target, the queue,
// the revert commits in it and the verdicts of the notes. It returns nil
// when the queue is empty.
func (r *Runner) newPass(ctx context.Context, g *Gate) (*pass, error) {
	repo := r.Repo
	if r.Key == nil {
		return nil, &StoppedError{Gate: g.Name, Reason: "no verdict key: Sluice cannot sign or verify verdicts"}
	}
	if err := repo.Fetch(ctx, r.Source, g.Target); err != nil {
		if errors.Is(err, gitrepo.ErrBranchNotFound) {
			return nil, &StoppedError{Gate: g.Name, Reason: err.Error()}
		}
		return nil, fmt.Errorf("fetch: %w", err)
	}
	target, err := repo.Tip(ctx, g.Target)
	if err != nil {
		return nil, err
	}
	if err := r.checkTarget(g, target); err != nil {
		return nil, err
	}
	queue, err := repo.Queue(ctx, r.Source, g.Target)
	if err != nil {
		if errors.Is(err, gitrepo.ErrNotAncestor) {
			return nil, &StoppedError{Gate: g.Name, Reason: fmt.Sprintf("target branch %s is not an ancestor of %s: Sluice never force-pushes, so a person has to reconcile them", g.Target, r.Source)}
		}
		return nil, fmt.Errorf("list queue: %w", err)
	}
	// Leftovers of interrupted runs, and failed namespaces kept long enough.
	if deleted, err := r.env(g).Cleanup(ctx, g.Name); err != nil {
		return nil, err
	} else if len(deleted) > 0 {
		r.log().Info("removed leftover namespaces", "gate", g.Name, "namespaces", deleted)
	}
	if len(queue) == 0 {
		return nil, nil
	}
	reverts, err := r.findReverts(ctx, queue)
	if err != nil {
		return nil, err
	}

	p := &pass{
		r:        r,
		g:        g,
		live:     !speculative(g),
		target:   target,
		pushedTo: target,
		commits:  map[string]gitrepo.Commit{},
		reverts:  map[plumbing.Hash]gitrepo.Revert{},
		pushed:   map[plumbing.Hash]bool{},
		notes:    map[string]gitrepo.Record{},
		passed:   map[string]gitrepo.Record{},
		running:  map[string]*running{},
		finished: map[string]result{},
		results:  make(chan result),
		settles:  make(chan chan error),
		cache:    newDigestCache(),
		pos:      map[string]int{},
	}
	p.st = plan.State{
		Options: plan.Options{
			Strategy: g.Strategy,
			Min:      g.ParallelismMin,
			Max:      g.ParallelismMax,
			Batch:    g.ParallelismMax,
			Revert:   g.Revert,
		},
		Target:   target.String(),
		Verdicts: map[string]plan.Verdict{},
	}
	byRevert := map[plumbing.Hash]gitrepo.Revert{} // revert commit -> what it reverts
	for _, rev := range reverts {
		byRevert[rev.Commit.Hash] = rev
		if _, dup := p.reverts[rev.Rejected]; !dup {
			p.reverts[rev.Rejected] = rev
		}
	}
	for i, c := range queue {
		id := c.Hash.String()
		p.commits[id] = c
		p.pos[id] = i
		pc := plan.Commit{ID: id}
		if rev, ok := byRevert[c.Hash]; ok {
			pc.Reverts, pc.Ours = rev.Rejected.String(), rev.Gate == g.Name
		}
		p.st.Queue = append(p.st.Queue, pc)
		rec, ok, err := r.readRecord(ctx, g.Name, c.Hash)
		if err != nil {
			return nil, err
		}
		if ok && (rec.Verdict == string(Passed) || rec.Verdict == string(Failed)) {
			p.st.Verdicts[id] = plan.Verdict(rec.Verdict)
			p.notes[id] = rec
			if rec.Verdict == string(Passed) {
				p.passed[id] = rec
			}
			if rec.Digest != "" {
				p.cache.seen[rec.Digest] = rec
			}
		}
	}
	// The target is the last passed candidate until a queued commit passes.
	if rec, ok, err := r.readRecord(ctx, g.Name, target); err != nil {
		return nil, err
	} else if ok && rec.Verdict == string(Passed) {
		p.targetRec = rec
		if rec.Digest != "" {
			rec.Reason = sameAsLastPassed
			p.cache.seen[rec.Digest] = rec
		}
	}
	return p, nil
}

// sameAsLastPassed is the reason of a verdict reused from the last passed candidate.
const sameAsLastPassed = "renders the same objects as the last passed candidate"

// pass is the state of one pass over a gate's queue.
type pass struct {
	r *Runner
	g *Gate
	// live: the progress events of a run are emitted as they happen (one
	// run at a time); otherwise they are held back until its verdict is
	// decided, so that concurrent runs do not interleave.
	live      bool
	st        plan.State
	target    plumbing.Hash                    // the target branch's tip, once the fast-forward planned is pushed
	targetRec gitrepo.Record                   // its record, when it passed
	pushedTo  plumbing.Hash                    // the target branch's tip on the remote
	unpushed  int                              // verdicts written in the local notes only
	settleErr error                            // the publishing that failed, if one did
	commits   map[string]gitrepo.Commit        // the queue and the reverts pushed, by id
	reverts   map[plumbing.Hash]gitrepo.Revert // rejected commit -> its first revert
	pushed    map[plumbing.Hash]bool           // rejected commits whose revert this pass pushed or took
	notes     map[string]gitrepo.Record        // passed and failed verdicts of the notes
	passed    map[string]gitrepo.Record        // passed commits' records: notes and this pass's
	running   map[string]*running              // by run key
	finished  map[string]result                // by run key
	results   chan result
	// settles are the runs' requests to publish what is decided
	// (candidateRun.settle); each gets settle's error.
	settles chan chan error
	// outstanding counts run goroutines that have not sent their result.
	outstanding int
	gen         int
	cache       *digestCache
	pos         map[string]int // queue position of each commit, reverts pushed included
}

type running struct {
	run    plan.Run
	cancel context.CancelFunc
	gen    int
}

// result is a run's outcome. Its progress events are held back (unless
// the pass is live) until its verdict is decided.
type result struct {
	run     plan.Run
	gen     int
	rec     gitrepo.Record
	events  []Event
	err     error
	flushed bool
}

// digestCache maps rendered digests to verdicts, shared by the runs of a
// pass, and has each rendering tested at most once per pass, by the first
// run in queue order that renders it, as one-at-a-time gating would: a run
// that renders a digest waits until every run ahead of it has rendered,
// then takes the verdict the cache holds, or waits for the run testing
// that digest to end, or claims the digest and tests it.
type digestCache struct {
	mu   sync.Mutex
	seen map[string]gitrepo.Record
	// rendering counts the runs not past their render, by queue position.
	rendering map[int]int
	// claims are the digests being tested, and the position of the run
	// testing each.
	claims map[string]int
	// changed is closed, and replaced, whenever the above change.
	changed chan struct{}
}

func newDigestCache() *digestCache {
	return &digestCache{seen: map[string]gitrepo.Record{}, rendering: map[int]int{}, claims: map[string]int{}, changed: make(chan struct{})}
}

func (c *digestCache) putLocked(rec gitrepo.Record) {
	if _, ok := c.seen[rec.Digest]; !ok {
		c.seen[rec.Digest] = rec
		c.broadcastLocked()
	}
}

func (c *digestCache) broadcastLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// starting counts a run at queue position pos as rendering until its
// ticket says otherwise. The runner calls it before the run's goroutine
// starts, so that the runs it starts together are counted before any of
// them judges its digest.
func (c *digestCache) starting(pos int) *renderTicket {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rendering[pos]++
	return &renderTicket{c: c, pos: pos}
}

// renderTicket is one run's place in its digestCache.
type renderTicket struct {
	c    *digestCache
	pos  int
	done bool // past its render; guarded by c.mu
}

// rendered is the run past its render without a digest to judge, whatever
// its outcome. It may be called again.
func (t *renderTicket) rendered() {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.renderedLocked()
}

func (t *renderTicket) renderedLocked() {
	if t.done {
		return
	}
	t.done = true
	if t.c.rendering[t.pos]--; t.c.rendering[t.pos] <= 0 {
		delete(t.c.rendering, t.pos)
	}
	t.c.broadcastLocked()
}

// judge is what the run, which rendered digest, does about it: found, the
// verdict of that digest; otherwise the run claims the digest, tests it,
// and calls release with its record (a passed or failed verdict is kept
// for the runs behind it; anything else lets another run claim the
// digest). It waits while a run ahead of it is still rendering, and while
// another run tests digest (one ahead of it; or, when that run was started
// after this one, behind it). Being past its render and claiming are one
// step, so that no run behind it claims the digest in between.
func (t *renderTicket) judge(ctx context.Context, digest string) (rec gitrepo.Record, found bool, release func(gitrepo.Record), err error) {
	c := t.c
	c.mu.Lock()
	t.renderedLocked()
	for {
		if rec, ok := c.seen[digest]; ok {
			c.mu.Unlock()
			return rec, true, nil, nil
		}
		_, claimed := c.claims[digest]
		ahead := false
		for p := range c.rendering {
			ahead = ahead || p < t.pos
		}
		if !claimed && !ahead {
			break
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return gitrepo.Record{}, false, nil, ctx.Err()
		}
		c.mu.Lock()
	}
	c.claims[digest] = t.pos
	c.mu.Unlock()
	var once sync.Once
	return gitrepo.Record{}, false, func(rec gitrepo.Record) {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			delete(c.claims, digest)
			if rec.Digest == digest && !rec.Skipped && (rec.Verdict == string(Passed) || rec.Verdict == string(Failed)) {
				c.putLocked(rec)
			}
			c.broadcastLocked()
		})
	}, nil
}

// run executes plan.Next until every queued commit, and every revert it
// pushes, has a verdict. For each plan: cancel the stale runs; tell the
// verdicts decided; push the reverts they call for; write the verdicts in
// the local notes in queue order (after the reverts, so that a restart
// finds the note or the revert and never repeats one); plan the
// fast-forward; start the new runs, each in its own goroutine, context and
// namespace. An infrastructure error of a run ends the pass with it (the
// caller backs off and tries again).
//
// What is decided is published (settle: the notes pushed, then the target
// fast-forwarded to the furthest commit planned) once, before a run starts
// something slow (a render, a test) and when the pass ends, rather than
// per verdict: a queue whose commits render nothing new costs two pushes,
// not two per commit. A crash before that loses written verdicts, never
// an action: the fast-forward follows the notes, and a revert precedes
// them.
func (p *pass) run(ctx context.Context) (again bool, err error) {
	again, err = p.steps(ctx)
	if serr := p.settle(ctx); err == nil {
		err = serr
	}
	return again, err
}

// steps is run without the last settle.
func (p *pass) steps(ctx context.Context) (again bool, err error) {
	r, g := p.r, p.g
	for {
		pl := plan.Next(p.st)
		for _, run := range pl.Cancel {
			if sr := p.running[run.Key]; sr != nil {
				sr.cancel()
				delete(p.running, run.Key)
				r.log().Info("cancelled a stale candidate", "gate", g.Name, "commit", short(plumbing.NewHash(run.Commit)), "candidate", run.Key)
			}
		}
		// The verdicts and the reverts, in queue order: a failed
		// commit's revert is pushed as soon as its verdict is decided
		// (the crash point comes first), and its verdict is told with
		// the revert.
		recs := make([]gitrepo.Record, len(pl.Verdicts))
		reverts := slices.Clone(pl.Revert) // left to push, oldest first
		revertUpTo := func(pos int) error {
			for len(reverts) > 0 && p.pos[reverts[0]] <= pos {
				id := reverts[0]
				reverts = reverts[1:]
				reason := p.notes[id].Reason
				for i, d := range pl.Verdicts {
					if d.Commit == id {
						reason = recs[i].Reason
					}
				}
				moved, err := p.revert(ctx, id, reason)
				again = again || moved
				if err != nil {
					return err
				}
			}
			return nil
		}
		for i, d := range pl.Verdicts {
			if err := revertUpTo(p.pos[d.Commit] - 1); err != nil {
				return again, err
			}
			recs[i] = p.decided(d)
			crashPoint("verdict")
			err := revertUpTo(p.pos[d.Commit])
			p.tell(d, recs[i])
			if err != nil {
				return again, err
			}
		}
		if err := revertUpTo(math.MaxInt); err != nil {
			return again, err
		}
		for i, d := range pl.Verdicts {
			if err := p.record(ctx, d, recs[i]); err != nil {
				return again, err
			}
		}
		if pl.FastForward != "" {
			p.target = plumbing.NewHash(pl.FastForward)
			p.targetRec = p.passed[pl.FastForward]
		}
		if again {
			return again, nil
		}
		for _, run := range pl.Start {
			p.start(ctx, run)
		}
		p.st.Apply(pl)
		switch {
		case pl.Done:
			return again, nil
		case len(pl.Revert) > 0:
			continue
		case len(p.running) == 0:
			return again, fmt.Errorf("gate %s: the %s planner waits for no running test", g.Name, g.Strategy)
		}
		var d result
		for waiting := true; waiting; {
			select {
			case d = <-p.results:
				waiting = false
			case reply := <-p.settles:
				err := p.settle(ctx)
				reply <- err
				if err != nil {
					return again, err
				}
			}
		}
		p.outstanding--
		sr := p.running[d.run.Key]
		if sr == nil || sr.gen != d.gen {
			continue // a cancelled run; its namespace is gone with it
		}
		delete(p.running, d.run.Key)
		if d.err != nil {
			r.emit(Event{Gate: g.Name, Commit: p.commits[d.run.Commit], Step: "verdict", Verdict: Error, Detail: d.err.Error()})
			if err := p.settle(ctx); err != nil {
				return again, err
			}
			if d.rec.Verdict == string(Error) {
				r.recordError(ctx, p.commits[d.run.Commit], d.rec)
			}
			return again, d.err
		}
		p.finished[d.run.Key] = d
		p.st.Observe(plan.Result{Run: d.run, Verdict: plan.Verdict(d.rec.Verdict), Reused: d.rec.Skipped})
	}
}

// settle publishes what the pass decided: it pushes the verdicts written
// in the local notes, then fast-forwards the target to the furthest commit
// planned. Once it failed, it fails again with the same error.
func (p *pass) settle(ctx context.Context) error {
	if p.settleErr != nil {
		return p.settleErr
	}
	if p.unpushed > 0 {
		// PushNotes's errors say "push notes" themselves.
		if err := p.r.Repo.PushNotes(ctx); err != nil {
			p.settleErr = err
			return err
		}
		for ; p.unpushed > 0; p.unpushed-- {
			p.r.stepped(p.g.Name)
		}
	}
	if p.target != p.pushedTo {
		if err := p.fastForward(ctx, p.commits[p.target.String()]); err != nil {
			p.settleErr = err
			return err
		}
	}
	return nil
}

// stopAll cancels the runs still going and waits for every goroutine, so
// that each one's Env.Test has removed its namespace.
func (p *pass) stopAll() {
	for _, sr := range p.running {
		sr.cancel()
	}
	for ; p.outstanding > 0; p.outstanding-- {
		<-p.results
	}
}

// start tests a planned run in its own goroutine and context.
func (p *pass) start(ctx context.Context, run plan.Run) {
	cr := &candidateRun{
		gate:      p.g,
		commit:    p.commits[run.Commit],
		key:       run.Key,
		namespace: RunNamespace(p.g.Name, run.Commit, run.Key),
		last:      p.lastPassed(run.Commit),
		priority:  p.pos[run.Commit],
	}
	for _, id := range run.Excluded {
		cr.excluded = append(cr.excluded, p.commits[id])
	}
	var (
		mu     sync.Mutex
		events []Event
	)
	cr.emit = p.r.emit
	cr.settle = func(ctx context.Context) error {
		reply := make(chan error, 1)
		select {
		case p.settles <- reply:
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case err := <-reply:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if !p.live {
		cr.emit = func(e Event) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, e)
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	cr.ticket = p.cache.starting(p.pos[run.Commit])
	p.gen++
	p.running[run.Key] = &running{run: run, cancel: cancel, gen: p.gen}
	p.outstanding++
	gen := p.gen
	go func() {
		defer cancel()
		d := result{run: run, gen: gen, flushed: p.live}
		d.rec, d.err = p.r.testRun(rctx, cr)
		mu.Lock()
		d.events = events
		mu.Unlock()
		p.results <- d
	}()
}

// lastPassed is the last passed candidate before commit id in the queue:
// the newest commit before it with a passed verdict, else the target.
func (p *pass) lastPassed(id string) passedCandidate {
	i := slices.IndexFunc(p.st.Queue, func(c plan.Commit) bool { return c.ID == id })
	for i--; i >= 0; i-- {
		c := p.st.Queue[i].ID
		if rec, ok := p.passed[c]; ok && p.st.Verdicts[c] == plan.Passed {
			return passedCandidate{commit: plumbing.NewHash(c), tree: rec.Candidate, digest: rec.Digest}
		}
	}
	return passedCandidate{commit: p.target, tree: p.targetRec.Candidate, digest: p.targetRec.Digest}
}

// decided tells the progress events of the run that decided a verdict,
// and returns the verdict's record, with how it was judged; tell says
// the verdict.
func (p *pass) decided(d plan.Decision) gitrepo.Record {
	r, g := p.r, p.g
	c := p.commits[d.Commit]
	var rec gitrepo.Record
	if d.Judgement.How == plan.ByRevert {
		rev := p.reverts[c.Hash]
		rec = gitrepo.Record{
			Gate:         g.Name,
			Verdict:      string(Failed),
			Reason:       reasonFromRevert(rev.Commit.Message),
			RevertCommit: rev.Commit.Hash,
			Started:      rev.Commit.When.UTC(),
		}
	} else {
		res := p.finished[d.Run]
		if !res.flushed {
			for _, e := range res.events {
				r.emit(e)
			}
			res.flushed = true
			p.finished[d.Run] = res
		}
		rec = res.rec
		rec.Durations = maps.Clone(res.rec.Durations)
		rec.Verdict = string(d.Verdict)
		if res.run.Commit != d.Commit {
			// Judged by the candidate of a newer commit that holds it.
			rec.Candidate, rec.Digest, rec.Skipped = plumbing.ZeroHash, "", false
			rec.Reason = fmt.Sprintf("the candidate of %s, which holds this commit, passed", short(plumbing.NewHash(res.run.Commit)))
		}
	}
	if d.Judgement.How != plan.Alone || d.Judgement.Reused && !p.live {
		rec.Reason = joinReason(rec.Reason, "judged "+d.Judgement.String())
	}
	return rec
}

// tell says a decided verdict: the event, with the failed commit's
// revert when there is one, and the log line.
func (p *pass) tell(d plan.Decision, rec gitrepo.Record) {
	r, g := p.r, p.g
	c := p.commits[d.Commit]
	e := Event{Gate: g.Name, Commit: c, Step: "verdict", Verdict: Verdict(d.Verdict), Took: rec.Durations[StepTotal], Detail: firstLines(rec.Reason, 6)}
	if rev, ok := p.reverts[c.Hash]; ok && d.Verdict == plan.Failed {
		e.Revert = rev.Commit.Hash
	}
	r.emit(e)
	log := r.log().With("gate", g.Name, "commit", short(c.Hash), "took", rec.Durations[StepTotal])
	if d.Verdict == plan.Passed {
		log.Info("candidate passed", "skipped", rec.Skipped)
	} else {
		log.Warn("candidate failed", "reason", firstLines(rec.Reason, 3))
	}
}

// revert pushes a revert of the failed commit id (or takes one already on
// the source) and appends it to the queue. moved: the revert sits on
// source commits this pass has not listed, so another pass must follow.
func (p *pass) revert(ctx context.Context, id, reason string) (moved bool, err error) {
	c := p.commits[id]
	rev, err := p.r.pushRevert(ctx, p.g, c, reason)
	if err != nil {
		return false, err
	}
	p.reverts[c.Hash] = rev
	p.pushed[c.Hash] = true
	revID := rev.Commit.Hash.String()
	if _, listed := p.commits[revID]; !listed {
		// Someone pushed to the source in between: the revert sits on
		// commits this pass has not listed. Record what is decided,
		// then start a new pass over the new queue.
		moved = rev.Commit.Parent.String() != p.st.Queue[len(p.st.Queue)-1].ID
		p.commits[revID] = rev.Commit
		p.pos[revID] = len(p.pos)
		p.st.Queue = append(p.st.Queue, plan.Commit{ID: revID, Reverts: id, Ours: rev.Gate == p.g.Name})
	}
	return moved, nil
}

// record writes a decided verdict in the local notes (settle pushes
// them), naming the revert of a failed commit
// that this pass pushed, or took from the source (another gate's), or
// that Sluice wrote for this gate.
func (p *pass) record(ctx context.Context, d plan.Decision, rec gitrepo.Record) error {
	c := p.commits[d.Commit]
	if d.Verdict == plan.Failed {
		if rev, ok := p.reverts[c.Hash]; ok && (rev.Gate == p.g.Name || p.pushed[c.Hash]) {
			rec.RevertCommit = rev.Commit.Hash
		}
	}
	if err := p.r.writeRecord(ctx, c, rec); err != nil {
		return err
	}
	p.unpushed++
	if d.Verdict == plan.Passed {
		p.passed[d.Commit] = rec
	}
	return nil
}

func joinReason(reason, judged string) string {
	if reason == "" {
		return judged
	}
	return reason + "\n(" + judged + ")"
}

// speculative reports whether g tests more than one candidate at a time.
func speculative(g *Gate) bool {
	return g.Strategy == plan.Speculative || g.Strategy == plan.Batch
}

// findReverts returns the commits of queue that revert another, oldest
// first. Only evidence nobody else can write counts (gitrepo.RevertOf):
// Sluice's signature, or git's own revert message on a commit whose tree
// really undoes the commit it names. A line quoting `This reverts commit`
// in a squash merge, or Sluice's trailers written by someone else, make
// nothing a revert.
func (r *Runner) findReverts(ctx context.Context, queue []gitrepo.Commit) ([]gitrepo.Revert, error) {
	var out []gitrepo.Revert
	for _, c := range queue {
		rev, ok, err := r.Repo.RevertOf(ctx, c, r.Key)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, rev)
		}
	}
	return out, nil
}

// checkTarget stops the gate when someone else moved its target branch.
func (r *Runner) checkTarget(g *Gate, tip plumbing.Hash) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lastTarget == nil {
		r.lastTarget = map[string]plumbing.Hash{}
	}
	last, ok := r.lastTarget[g.Name]
	if ok && last != tip {
		return &StoppedError{Gate: g.Name, Reason: fmt.Sprintf("target branch %s was moved outside Sluice from %s to %s; only Sluice may move it (restart Sluice after checking it)", g.Target, short(last), short(tip))}
	}
	r.lastTarget[g.Name] = tip
	return nil
}

func (r *Runner) setTarget(g *Gate, tip plumbing.Hash) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastTarget[g.Name] = tip
}

// fastForward moves the target branch to c, naming the old value it expects
// (where the pass last pushed it).
func (p *pass) fastForward(ctx context.Context, c gitrepo.Commit) error {
	r, g := p.r, p.g
	start := time.Now()
	err := r.Repo.Push(ctx, g.Target, p.pushedTo, c.Hash)
	if errors.Is(err, gitrepo.ErrStale) {
		if ferr := r.Repo.Fetch(ctx, g.Target); ferr != nil {
			return fmt.Errorf("fast-forward %s to %s: %w", g.Target, short(c.Hash), ferr)
		}
		tip, terr := r.Repo.Tip(ctx, g.Target)
		if terr != nil {
			return terr
		}
		if tip != c.Hash {
			return &StoppedError{Gate: g.Name, Reason: fmt.Sprintf("target branch %s was moved outside Sluice to %s while fast-forwarding it to %s", g.Target, short(tip), short(c.Hash))}
		}
		err = nil
	}
	if err != nil {
		return fmt.Errorf("fast-forward %s to %s: %w", g.Target, short(c.Hash), err)
	}
	p.pushedTo = c.Hash
	r.setTarget(g, c.Hash)
	crashPoint("fast-forwarded")
	r.log().Info("target fast-forwarded", "gate", g.Name, "branch", g.Target, "commit", short(c.Hash))
	r.emit(Event{Gate: g.Name, Commit: c, Step: "fast-forward", Took: time.Since(start), Detail: fmt.Sprintf("%s → %s", g.Target, short(c.Hash))})
	return nil
}

func short(h plumbing.Hash) string { return h.String()[:7] }
