package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/manifests"
	"github.com/sluice-gitops/sluice/reconcile/plan"
	"github.com/sluice-gitops/sluice/testenv"
)

// speculative reports whether g tests more than one candidate at a time.
func speculative(g *Gate) bool {
	return g.Strategy == plan.Speculative || g.Strategy == plan.Batch
}

// speculate is one pass of a gate whose strategy is speculative or batch:
// it executes plan.Next until every queued commit, and every revert it
// pushes, has a verdict. Each planned run tests its candidate in its own
// goroutine, context and namespace; the verdicts are written only when the
// planner decides them, in queue order, so they are those of serial gating.
// An infrastructure error of a run cancels the others and is returned, as
// a serial pass returns it: the caller backs off and tries again.
func (r *Runner) speculate(ctx context.Context, g *Gate) (again bool, err error) {
	repo := r.Repo
	if r.Key == nil {
		return false, &StoppedError{Gate: g.Name, Reason: "no verdict key: Sluice cannot sign or verify verdicts"}
	}
	if err := repo.Fetch(ctx, r.Source, g.Target); err != nil {
		if errors.Is(err, gitrepo.ErrBranchNotFound) {
			return false, &StoppedError{Gate: g.Name, Reason: err.Error()}
		}
		return false, fmt.Errorf("fetch: %w", err)
	}
	target, err := repo.Tip(g.Target)
	if err != nil {
		return false, err
	}
	if err := r.checkTarget(g, target); err != nil {
		return false, err
	}
	queue, err := repo.Queue(r.Source, g.Target)
	if err != nil {
		if errors.Is(err, gitrepo.ErrNotAncestor) {
			return false, &StoppedError{Gate: g.Name, Reason: fmt.Sprintf("target branch %s is not an ancestor of %s: Sluice never force-pushes, so a person has to reconcile them", g.Target, r.Source)}
		}
		return false, fmt.Errorf("list queue: %w", err)
	}
	if deleted, err := r.Env.Cleanup(ctx, g.Name); err != nil {
		return false, err
	} else if len(deleted) > 0 {
		r.log().Info("removed leftover namespaces", "gate", g.Name, "namespaces", deleted)
	}
	if len(queue) == 0 {
		return false, nil
	}
	reverts, err := r.findReverts(queue)
	if err != nil {
		return false, err
	}

	s := &spec{
		r:        r,
		g:        g,
		q:        &walk{gate: g, target: target},
		commits:  map[string]gitrepo.Commit{},
		reverts:  map[plumbing.Hash]gitrepo.Revert{},
		running:  map[string]*specRun{},
		finished: map[string]specDone{},
		results:  make(chan specDone),
		cache:    &specCache{seen: map[string]gitrepo.Record{}},
	}
	defer s.stopAll()
	st := plan.State{
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
		if _, dup := s.reverts[rev.Rejected]; !dup {
			s.reverts[rev.Rejected] = rev
		}
	}
	notes := map[string]gitrepo.Record{}
	for _, c := range queue {
		id := c.Hash.String()
		s.commits[id] = c
		pc := plan.Commit{ID: id}
		if rev, ok := byRevert[c.Hash]; ok {
			pc.Reverts, pc.Ours = rev.Rejected.String(), rev.Gate == g.Name
		}
		st.Queue = append(st.Queue, pc)
		rec, ok, err := r.readRecord(g.Name, c.Hash)
		if err != nil {
			return false, err
		}
		if ok && (rec.Verdict == string(Passed) || rec.Verdict == string(Failed)) {
			st.Verdicts[id] = plan.Verdict(rec.Verdict)
			notes[id] = rec
			if rec.Digest != "" {
				s.cache.seen[rec.Digest] = rec
			}
		}
	}
	// A candidate rendering the objects of the last passed one passes
	// without a test, as in a serial pass.
	if rec, ok, err := r.readRecord(g.Name, target); err != nil {
		return false, err
	} else if ok && rec.Verdict == string(Passed) {
		s.q.passedCommit, s.q.passedTree = target, rec.Candidate
		if rec.Digest != "" {
			rec.Reason = "renders the same objects as the last passed candidate"
			s.cache.seen[rec.Digest] = rec
		}
	}

	for {
		p := plan.Next(st)
		for _, run := range p.Cancel {
			if sr := s.running[run.Key]; sr != nil {
				sr.cancel()
				delete(s.running, run.Key)
				r.log().Info("cancelled a stale candidate", "gate", g.Name, "commit", short(plumbing.NewHash(run.Commit)), "candidate", run.Key)
			}
		}
		for _, id := range p.Revert {
			c := s.commits[id]
			reason := notes[id].Reason
			for _, d := range p.Verdicts {
				if d.Commit == id && d.Run != "" {
					reason = s.finished[d.Run].rec.Reason
				}
			}
			rev, err := r.pushRevert(ctx, g, c, reason)
			if err != nil {
				return again, err
			}
			s.reverts[c.Hash] = rev
			last := st.Queue[len(st.Queue)-1].ID
			if rev.Commit.Parent.String() != last && s.commits[rev.Commit.Hash.String()].Hash.IsZero() {
				// Someone pushed to the source in between: the revert
				// sits on commits this pass has not listed. Record what
				// is decided, then start a new pass over the new queue.
				again = true
			}
			if s.commits[rev.Commit.Hash.String()].Hash.IsZero() {
				s.commits[rev.Commit.Hash.String()] = rev.Commit
				st.Queue = append(st.Queue, plan.Commit{ID: rev.Commit.Hash.String(), Reverts: id, Ours: rev.Gate == g.Name})
			}
		}
		for _, d := range p.Verdicts {
			if err := s.decide(ctx, d); err != nil {
				return again, err
			}
		}
		if p.FastForward != "" && s.q.target.String() != p.FastForward {
			if err := r.fastForward(ctx, s.q, s.commits[p.FastForward]); err != nil {
				return again, err
			}
		}
		if again {
			return again, nil
		}
		for _, run := range p.Start {
			s.start(ctx, run)
		}
		st.Apply(p)
		switch {
		case p.Done:
			return again, nil
		case len(p.Revert) > 0:
			continue
		case len(s.running) == 0:
			return again, fmt.Errorf("gate %s: the %s planner waits for no running test", g.Name, g.Strategy)
		}
		d := <-s.results
		s.outstanding--
		sr := s.running[d.run.Key]
		if sr == nil || sr.gen != d.gen {
			continue // a cancelled run; its namespace is gone with it
		}
		delete(s.running, d.run.Key)
		if d.err != nil {
			r.emit(Event{Gate: g.Name, Commit: s.commits[d.run.Commit], Step: "verdict", Verdict: Error, Detail: d.err.Error()})
			if d.rec.Verdict == string(Error) {
				r.recordError(ctx, s.commits[d.run.Commit], d.rec)
			}
			return again, d.err
		}
		s.finished[d.run.Key] = d
		if d.rec.Digest != "" && !d.rec.Skipped {
			s.cache.put(d.rec)
		}
		st.Observe(plan.Result{Run: d.run, Verdict: plan.Verdict(d.rec.Verdict), Reused: d.rec.Skipped})
	}
}

// spec is the state of one speculative or batch pass.
type spec struct {
	r           *Runner
	g           *Gate
	q           *walk // target and last passed candidate, for fastForward and control
	commits     map[string]gitrepo.Commit
	reverts     map[plumbing.Hash]gitrepo.Revert // rejected commit -> its first revert
	running     map[string]*specRun              // by run key
	finished    map[string]specDone              // by run key
	results     chan specDone
	outstanding int // goroutines that have not sent their result
	gen         int
	cache       *specCache
}

type specRun struct {
	run    plan.Run
	cancel context.CancelFunc
	gen    int
}

// specDone is a run's result, with its progress events held back until
// its verdict is decided, so that concurrent runs do not interleave.
type specDone struct {
	run     plan.Run
	gen     int
	rec     gitrepo.Record
	events  []Event
	err     error
	flushed bool
}

// specCache maps rendered digests to verdicts, shared by the runs.
type specCache struct {
	mu   sync.Mutex
	seen map[string]gitrepo.Record
}

func (c *specCache) get(digest string) (gitrepo.Record, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rec, ok := c.seen[digest]
	return rec, ok
}

func (c *specCache) put(rec gitrepo.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[rec.Digest]; !ok {
		c.seen[rec.Digest] = rec
	}
}

// stopAll cancels the runs still going and waits for every goroutine, so
// that each one's Env.Test has removed its namespace.
func (s *spec) stopAll() {
	for _, sr := range s.running {
		sr.cancel()
	}
	for ; s.outstanding > 0; s.outstanding-- {
		<-s.results
	}
}

func (s *spec) start(ctx context.Context, run plan.Run) {
	c := s.commits[run.Commit]
	rq := &walk{gate: s.g, target: s.q.target, passedCommit: s.q.passedCommit, passedTree: s.q.passedTree}
	for _, id := range run.Excluded {
		rq.pending = append(rq.pending, s.commits[id])
	}
	rctx, cancel := context.WithCancel(ctx)
	s.gen++
	s.running[run.Key] = &specRun{run: run, cancel: cancel, gen: s.gen}
	s.outstanding++
	gen := s.gen
	ns := RunNamespace(s.g.Name, run.Commit, run.Key)
	go func() {
		defer cancel()
		d := specDone{run: run, gen: gen}
		d.rec, d.events, d.err = s.r.testRun(rctx, rq, c, ns, s.cache)
		s.results <- d
	}()
}

// decide records a verdict the planner decided, with how it was judged.
func (s *spec) decide(ctx context.Context, d plan.Decision) error {
	r, g := s.r, s.g
	c := s.commits[d.Commit]
	var rec gitrepo.Record
	if d.Judgement.How == plan.ByRevert {
		rev := s.reverts[c.Hash]
		rec = gitrepo.Record{
			Gate:         g.Name,
			Verdict:      string(Failed),
			Reason:       reasonFromRevert(rev.Commit.Message),
			RevertCommit: rev.Commit.Hash,
			Started:      rev.Commit.When.UTC(),
		}
	} else {
		res := s.finished[d.Run]
		if !res.flushed {
			for _, e := range res.events {
				r.emit(e)
			}
			res.flushed = true
			s.finished[d.Run] = res
		}
		rec = res.rec
		rec.Durations = maps.Clone(res.rec.Durations)
		rec.Verdict = string(d.Verdict)
		if res.run.Commit != d.Commit {
			// Judged by the candidate of a newer commit that holds it.
			rec.Candidate, rec.Digest, rec.Skipped = plumbing.ZeroHash, "", false
			rec.Reason = fmt.Sprintf("the candidate of %s, which holds this commit, passed", short(plumbing.NewHash(res.run.Commit)))
		}
		if d.Verdict == plan.Failed {
			if rev, ok := s.reverts[c.Hash]; ok && rev.Gate == g.Name {
				rec.RevertCommit = rev.Commit.Hash
			}
		}
	}
	if d.Judgement.How != plan.Alone || d.Judgement.Reused {
		rec.Reason = joinReason(rec.Reason, "judged "+d.Judgement.String())
	}
	if d.Verdict == plan.Passed {
		s.q.passedCommit, s.q.passedTree = c.Hash, rec.Candidate
	}
	r.emit(Event{Gate: g.Name, Commit: c, Step: "verdict", Verdict: Verdict(d.Verdict), Took: rec.Durations[StepTotal], Detail: firstLines(rec.Reason, 6)})
	if err := r.record(ctx, c, rec); err != nil {
		return err
	}
	crashPoint("verdict")
	return nil
}

func joinReason(reason, judged string) string {
	if reason == "" {
		return judged
	}
	return reason + "\n(" + judged + ")"
}

// RunNamespace names the test namespace of one planned run: the gate's
// namespace for the commit with a short hash of the run's key, since runs
// of one commit differ in the commits they leave out. It fits 63 bytes.
func RunNamespace(gate, commit, key string) string {
	sum := sha256.Sum256([]byte(key))
	suffix := "-" + hex.EncodeToString(sum[:])[:6]
	ns := manifests.TestNamespace(gate, commit)
	for g := gate; len(ns)+len(suffix) > 63 && g != ""; {
		g = g[:len(g)-1]
		ns = manifests.TestNamespace(g, commit)
	}
	return ns + suffix
}

// testRun is Runner.test for one planned run: it builds the candidate
// with q.pending reverted out, renders it, reuses a verdict for an equal
// rendering, and otherwise tests it in namespace ns. Its progress events
// are returned rather than emitted. A Fault is a failed record; any other
// error is returned.
func (r *Runner) testRun(ctx context.Context, q *walk, c gitrepo.Commit, ns string, cache *specCache) (gitrepo.Record, []Event, error) {
	g := q.gate
	started := time.Now()
	var (
		mu     sync.Mutex
		events []Event
	)
	emit := func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
	}
	rec := gitrepo.Record{
		Gate:      g.Name,
		Started:   started.UTC().Truncate(time.Second),
		Reverted:  q.pendingHashes(),
		Durations: map[string]time.Duration{},
		Attempts:  r.attempt(g.Name, c.Hash, false),
	}
	finish := func(v Verdict, reason string) (gitrepo.Record, []Event, error) {
		rec.Verdict, rec.Reason = string(v), reason
		rec.Durations[StepTotal] = time.Since(started).Round(time.Millisecond)
		log := r.log().With("gate", g.Name, "commit", short(c.Hash), "namespace", ns, "took", rec.Durations[StepTotal])
		if v == Passed {
			log.Info("candidate passed", "skipped", rec.Skipped)
		} else {
			log.Warn("candidate failed", "reason", firstLines(reason, 3))
		}
		mu.Lock()
		defer mu.Unlock()
		return rec, events, nil
	}
	fail := func(err error) (gitrepo.Record, []Event, error) {
		mu.Lock()
		defer mu.Unlock()
		return rec, events, err
	}

	tree, err := r.candidate(q, c)
	if err != nil {
		var f *testenv.Fault
		if errors.As(err, &f) {
			return finish(Failed, err.Error())
		}
		return fail(err)
	}
	rec.Candidate = tree

	start := time.Now()
	objs, err := r.render(ctx, tree, g.Path)
	rec.Durations[StepRender] = time.Since(start).Round(time.Millisecond)
	if err != nil {
		if testenv.IsFault(err) {
			emit(Event{Gate: g.Name, Commit: c, Step: StepRender, Took: rec.Durations[StepRender], Detail: "failed"})
			return finish(Failed, err.Error())
		}
		return fail(err)
	}
	rec.Digest = manifests.Digest(objs)
	emit(Event{Gate: g.Name, Commit: c, Step: StepRender, Took: rec.Durations[StepRender], Detail: fmt.Sprintf("%d objects", len(objs))})
	if prev, ok := cache.get(rec.Digest); ok {
		rec.Skipped = true
		return finish(Verdict(prev.Verdict), prev.Reason)
	}

	spec := testenv.TestSpec{
		Gate:          g.Name,
		Commit:        c.Hash.String(),
		Namespace:     ns,
		Objects:       objs,
		ClusterScoped: g.ClusterScoped,
		ApplyTimeout:  g.ApplyTimeout,
		HealthTimeout: g.HealthTimeout,
		TestsTimeout:  g.TestsTimeout,
		KeepNamespace: g.KeepNamespace,
		Commands:      g.Commands,

		ApplyConcurrency: g.ApplyConcurrency,
	}
	durations, err := r.Env.Test(ctx, spec, stepFunc(emit, g.Name, c))
	err = stopForeign(g, err)
	for k, v := range durations {
		rec.Durations[k] = v.Round(time.Millisecond)
	}
	var unrecognised *testenv.UnrecognisedError
	if errors.As(err, &unrecognised) {
		err = r.control(ctx, q, c, spec, unrecognised)
	}
	if err != nil {
		if testenv.IsFault(err) && ctx.Err() == nil {
			return finish(Failed, err.Error())
		}
		if ctx.Err() == nil {
			rec.Attempts = r.attempt(g.Name, c.Hash, true)
		}
		if !errors.Is(err, ErrGateStopped) && ctx.Err() == nil {
			rec.Verdict, rec.Reason = string(Error), err.Error()
			rec.Durations[StepTotal] = time.Since(started).Round(time.Millisecond)
		}
		return fail(fmt.Errorf("test %s: %w", short(c.Hash), err))
	}
	return finish(Passed, "")
}
