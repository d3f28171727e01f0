package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/sluice-gitops/sluice/gitrepo"
)

// maxPasses bounds one Drain: each pass either finishes the queue or
// pushed a revert that the next pass has to test.
const maxPasses = 100

// Drain tests gate g's queue until every queued commit has a verdict, the
// revert commits it pushed included. It returns an infrastructure error to
// be retried, or a *StoppedError that needs a person.
func (r *Runner) Drain(ctx context.Context, g *Gate) error {
	pass := r.pass
	if speculative(g) {
		pass = r.speculate
	}
	for i := 0; i < maxPasses; i++ {
		again, err := pass(ctx, g)
		if err != nil || !again {
			return err
		}
	}
	return fmt.Errorf("gate %s: queue not drained after %d passes", g.Name, maxPasses)
}

// pass is one walk over the queue. It reports whether it pushed to the
// source branch, so that another pass must follow.
func (r *Runner) pass(ctx context.Context, g *Gate) (again bool, err error) {
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
	target, err := repo.Tip(ctx, g.Target)
	if err != nil {
		return false, err
	}
	if err := r.checkTarget(g, target); err != nil {
		return false, err
	}
	queue, err := repo.Queue(ctx, r.Source, g.Target)
	if err != nil {
		if errors.Is(err, gitrepo.ErrNotAncestor) {
			return false, &StoppedError{Gate: g.Name, Reason: fmt.Sprintf("target branch %s is not an ancestor of %s: Sluice never force-pushes, so a person has to reconcile them", g.Target, r.Source)}
		}
		return false, fmt.Errorf("list queue: %w", err)
	}
	// Leftovers of interrupted runs, and failed namespaces kept long enough.
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
	q := &walk{gate: g, target: target, reverts: map[plumbing.Hash]gitrepo.Revert{}, seen: map[string]gitrepo.Record{}}
	reverting := map[plumbing.Hash]plumbing.Hash{} // revert commit -> the commit it reverts
	for _, rev := range reverts {
		reverting[rev.Commit.Hash] = rev.Rejected
		if _, dup := q.reverts[rev.Rejected]; !dup {
			q.reverts[rev.Rejected] = rev
		}
	}
	if rec, ok, err := r.readRecord(g.Name, target); err != nil {
		return false, err
	} else if ok && rec.Verdict == string(Passed) {
		q.lastPassed = rec.Digest
		q.passedCommit, q.passedTree = target, rec.Candidate
	}

	for _, c := range queue {
		if rejected, ok := reverting[c.Hash]; ok {
			q.drop(rejected)
		}
		rec, fresh, err := r.verdict(ctx, q, c)
		if err != nil {
			return again, err
		}
		if fresh {
			crashPoint("verdict")
		}
		if rec.Digest != "" {
			q.seen[rec.Digest] = rec
		}
		switch Verdict(rec.Verdict) {
		case Passed:
			q.lastPassed = rec.Digest
			q.passedCommit, q.passedTree = c.Hash, rec.Candidate
			if fresh {
				if err := r.record(ctx, c, rec); err != nil {
					return again, err
				}
			}
			if len(q.pending) == 0 && q.target != c.Hash {
				if err := r.fastForward(ctx, q, c); err != nil {
					return again, err
				}
			}
		case Failed:
			q.pending = append(q.pending, c)
			if rev, done := q.reverts[c.Hash]; done {
				if rec.RevertCommit.IsZero() && rev.Gate == g.Name {
					rec.RevertCommit, fresh = rev.Commit.Hash, true
				}
			} else if g.Revert {
				// The revert goes first: if it conflicts the gate stops and
				// nothing, not even the verdict, has been written.
				rev, err := r.pushRevert(ctx, g, c, rec.Reason)
				if err != nil {
					return again, err
				}
				q.reverts[c.Hash] = rev
				rec.RevertCommit = rev.Commit.Hash
				again = true
			}
			if fresh {
				if err := r.record(ctx, c, rec); err != nil {
					return again, err
				}
			}
		}
	}
	return again, nil
}

// walk is the state of one pass over a gate's queue.
type walk struct {
	gate       *Gate
	target     plumbing.Hash                    // the target branch's tip
	pending    []gitrepo.Commit                 // rejected, revert not yet in the history walked
	reverts    map[plumbing.Hash]gitrepo.Revert // rejected commit -> its revert in the source history
	lastPassed string                           // digest of the last passed candidate
	// The last passed commit and its candidate tree (zero when not
	// recorded): what a control run applies.
	passedCommit, passedTree plumbing.Hash
	seen                     map[string]gitrepo.Record // digest -> verdict, for reuse
}

func (q *walk) drop(h plumbing.Hash) {
	for i, p := range q.pending {
		if p.Hash == h {
			q.pending = append(q.pending[:i:i], q.pending[i+1:]...)
			return
		}
	}
}

func (q *walk) pendingHashes() []plumbing.Hash {
	hs := make([]plumbing.Hash, len(q.pending))
	for i, p := range q.pending {
		hs[i] = p.Hash
	}
	return hs
}

// findReverts returns the commits of queue that revert another, oldest
// first. Only evidence nobody else can write counts (gitrepo.RevertOf):
// Sluice's signature, or git's own revert message on a commit whose tree
// really undoes the commit it names. A line quoting `This reverts commit`
// in a squash merge, or Sluice's trailers written by someone else, make
// nothing a revert.
func (r *Runner) findReverts(queue []gitrepo.Commit) ([]gitrepo.Revert, error) {
	var out []gitrepo.Revert
	for _, c := range queue {
		rev, ok, err := r.Repo.RevertOf(context.TODO(), c, r.Key)
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

// fastForward moves the target branch to c, naming the old value it expects.
func (r *Runner) fastForward(ctx context.Context, q *walk, c gitrepo.Commit) error {
	g := q.gate
	start := time.Now()
	err := r.Repo.Push(ctx, g.Target, q.target, c.Hash)
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
	q.target = c.Hash
	r.setTarget(g, c.Hash)
	crashPoint("fast-forwarded")
	r.log().Info("target fast-forwarded", "gate", g.Name, "branch", g.Target, "commit", short(c.Hash))
	r.emit(Event{Gate: g.Name, Commit: c, Step: "fast-forward", Took: time.Since(start), Detail: fmt.Sprintf("%s → %s", g.Target, short(c.Hash))})
	return nil
}

func short(h plumbing.Hash) string { return h.String()[:7] }
