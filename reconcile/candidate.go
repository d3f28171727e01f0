package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/manifests"
	"github.com/sluice-gitops/sluice/testenv"
)

// readRecord returns gate's record on c if it is one Sluice signed for c.
// Anything else the note holds for the gate (unsigned, signed wrongly or
// for another commit, or not parsing) is ignored as if absent, and said
// once per commit rather than at every pass.
func (r *Runner) readRecord(ctx context.Context, gate string, c plumbing.Hash) (gitrepo.Record, bool, error) {
	rec, state, err := r.Repo.ReadRecord(ctx, c, gate, r.Key)
	if err != nil {
		return gitrepo.Record{}, false, fmt.Errorf("read note of %s: %w", short(c), err)
	}
	if state == gitrepo.RecordUnverifiable {
		r.mu.Lock()
		if r.unverified == nil {
			r.unverified = map[string]bool{}
		}
		first := !r.unverified[gate+"/"+c.String()]
		r.unverified[gate+"/"+c.String()] = true
		r.mu.Unlock()
		if first {
			r.log().Warn("ignoring a verdict record Sluice cannot verify", "gate", gate, "commit", short(c))
		}
	}
	return rec, state == gitrepo.RecordVerified, nil
}

// record signs rec for c, writes it into c's note, keeping other gates'
// records, and pushes the notes.
func (r *Runner) record(ctx context.Context, c gitrepo.Commit, rec gitrepo.Record) error {
	if err := r.writeRecord(ctx, c, rec); err != nil {
		return err
	}
	// PushNotes's errors say "push notes" themselves.
	if err := r.Repo.PushNotes(ctx); err != nil {
		return err
	}
	if rec.Verdict != string(Error) {
		r.stepped(rec.Gate)
	}
	return nil
}

// writeRecord signs rec for c and writes it into c's local note, keeping
// other gates' records; PushNotes publishes it.
func (r *Runner) writeRecord(ctx context.Context, c gitrepo.Commit, rec gitrepo.Record) error {
	signed, err := r.Key.SignRecord(c.Hash, rec)
	if err != nil {
		return fmt.Errorf("sign note of %s: %w", short(c.Hash), err)
	}
	if err := r.Repo.SetRecord(ctx, c.Hash, signed); err != nil {
		return fmt.Errorf("write note of %s: %w", short(c.Hash), err)
	}
	return nil
}

// recordError puts an error verdict in c's note, so that `sluice status`
// and `git log --notes=sluice` show why the commit is waiting. It is written
// once per change of reason, not at every retry, and is replaced by the
// verdict of a later attempt; an error record is never final. Failing to
// write it (Git may be what is down) is only logged.
func (r *Runner) recordError(ctx context.Context, c gitrepo.Commit, rec gitrepo.Record) {
	old, ok, err := r.readRecord(ctx, rec.Gate, c.Hash)
	if err == nil {
		if ok && old.Verdict == string(Error) && old.Reason == rec.Reason {
			return
		}
		err = r.record(ctx, c, rec)
	}
	if err != nil {
		r.log().Debug("error verdict not recorded", "gate", rec.Gate, "commit", short(c.Hash), "error", err)
	}
}

// reasonFromRevert recovers the reason from the body of a revert commit
// written by RevertMessage: the indented lines after "rejected it:".
func reasonFromRevert(msg string) string {
	_, body, ok := strings.Cut(msg, "rejected it:\n")
	if !ok {
		return "rejected (reason not recorded)"
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimLeft(body, "\n"), "\n") {
		if !strings.HasPrefix(l, "    ") && l != "" {
			break
		}
		lines = append(lines, strings.TrimPrefix(l, "    "))
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// candidateRun is one planned run as testRun needs it.
type candidateRun struct {
	gate      *Gate
	commit    gitrepo.Commit
	excluded  []gitrepo.Commit // pending rejected commits, oldest first
	key       string           // plan.Run.Key
	namespace string
	last      passedCandidate // what a control run applies
	ticket    *renderTicket   // its place among the pass's runs that render
	priority  int             // its commit's place in the queue: environments start in this order
	emit      func(Event)
	// settle, if set, publishes what the pass decided so far (the notes
	// and the fast-forward) before the run starts something slow: a
	// render, a test.
	settle func(context.Context) error
}

func (cr *candidateRun) settled(ctx context.Context) error {
	if cr.settle == nil {
		return nil
	}
	return cr.settle(ctx)
}

// passedCandidate is the last passed candidate before a run's commit.
type passedCandidate struct {
	commit plumbing.Hash
	tree   plumbing.Hash // zero when not recorded: the commit's own tree
	digest string
}

// testRun builds a run's candidate (its commit with the excluded commits
// reverted out), renders it and, unless an equal rendering was already
// judged, tests it in the run's namespace. A *testenv.Fault becomes a
// failed record; any other error is returned for retry, with an error
// record when it is one to write.
func (r *Runner) testRun(ctx context.Context, cr *candidateRun) (gitrepo.Record, error) {
	g, c := cr.gate, cr.commit
	started := time.Now()
	rec := gitrepo.Record{
		Gate:      g.Name,
		Started:   started.UTC().Truncate(time.Second),
		Durations: map[string]time.Duration{},
		Attempts:  r.attempt(g.Name, c.Hash, false),
	}
	for _, p := range cr.excluded {
		rec.Reverted = append(rec.Reverted, p.Hash)
	}
	finish := func(v Verdict, reason string) (gitrepo.Record, error) {
		rec.Verdict, rec.Reason = string(v), reason
		rec.Durations[StepTotal] = time.Since(started).Round(time.Millisecond)
		return rec, nil
	}

	defer cr.ticket.rendered()
	tree, err := r.candidate(ctx, cr)
	if err != nil {
		if testenv.IsFault(err) {
			return finish(Failed, err.Error())
		}
		return rec, err
	}
	rec.Candidate = tree

	start := time.Now()
	rd, err := r.renderCandidate(ctx, g, tree, cr.settled)
	rec.Durations[StepRender] = time.Since(start).Round(time.Millisecond)
	if err != nil {
		if testenv.IsFault(err) {
			cr.emit(Event{Gate: g.Name, Commit: c, Step: StepRender, Took: rec.Durations[StepRender], Detail: "failed"})
			return finish(Failed, err.Error())
		}
		return rec, err
	}
	objs := rd.objs
	rec.Digest = rd.digest
	detail := fmt.Sprintf("%d objects", len(objs))
	if rd.reused {
		detail = "unchanged inputs, " + detail
	}
	cr.emit(Event{Gate: g.Name, Commit: c, Step: StepRender, Took: rec.Durations[StepRender], Detail: detail})
	if rec.Digest == cr.last.digest {
		rec.Skipped = true
		return finish(Passed, sameAsLastPassed)
	}
	prev, found, release, err := cr.ticket.judge(ctx, rec.Digest)
	if err != nil {
		return rec, fmt.Errorf("test %s: %w", short(c.Hash), err)
	}
	if found {
		rec.Skipped = true
		return finish(Verdict(prev.Verdict), prev.Reason)
	}
	defer func() { release(rec) }()

	if rd.reused {
		// The objects are shared with the render they come from.
		objs = make([]*unstructured.Unstructured, len(rd.objs))
		for i, o := range rd.objs {
			objs[i] = o.DeepCopy()
		}
	}
	spec := testenv.TestSpec{
		Gate:          g.Name,
		Commit:        c.Hash.String(),
		Namespace:     cr.namespace,
		Objects:       objs,
		ClusterScoped: g.ClusterScoped,
		ApplyTimeout:  g.ApplyTimeout,
		HealthTimeout: g.HealthTimeout,
		TestsTimeout:  g.TestsTimeout,
		KeepNamespace: g.KeepNamespace,
		Commands:      g.Commands,

		ApplyConcurrency: g.ApplyConcurrency,
		Priority:         cr.priority,
		Reuse:            g.ReuseEnvironment,
	}
	if err := cr.settled(ctx); err != nil {
		return rec, err
	}
	durations, err := r.env(g).Test(ctx, spec, stepFunc(cr.emit, g.Name, c))
	err = stopForeign(g, err)
	for k, v := range durations {
		rec.Durations[k] = v.Round(time.Millisecond)
	}
	var unrecognised *testenv.UnrecognisedError
	if errors.As(err, &unrecognised) {
		err = r.control(ctx, cr, spec, unrecognised)
	}
	if err == nil {
		return finish(Passed, "")
	}
	if ctx.Err() != nil {
		// Cancelled (a stale run) or shut down: nobody's error.
		return rec, fmt.Errorf("test %s: %w", short(c.Hash), err)
	}
	if testenv.IsFault(err) {
		return finish(Failed, err.Error())
	}
	rec.Attempts = r.attempt(g.Name, c.Hash, true)
	if !errors.Is(err, ErrGateStopped) {
		// A stopped gate writes nothing: a person must look first.
		rec.Verdict, rec.Reason = string(Error), err.Error()
		rec.Durations[StepTotal] = time.Since(started).Round(time.Millisecond)
	}
	return rec, fmt.Errorf("test %s: %w", short(c.Hash), err)
}

// control decides whose fault an error answer Sluice does not recognise
// is: it runs the same step with the last passed candidate's objects, in a
// namespace of their own, on the same cluster. When that passes, the
// commit's objects are what the cluster refuses: a *testenv.Fault. When it
// fails too, or cannot be run, the cluster is at fault: an error, retried,
// never reverted.
func (r *Runner) control(ctx context.Context, cr *candidateRun, spec testenv.TestSpec, failure *testenv.UnrecognisedError) error {
	g, c := cr.gate, cr.commit
	passed, tree := cr.last.commit, cr.last.tree
	if tree.IsZero() {
		// No record of the candidate: the commit's own tree, which is
		// what was promoted.
		tc, err := r.Repo.Commit(ctx, passed)
		if err != nil {
			return fmt.Errorf("%w (no control run: %v)", failure, err)
		}
		tree = tc.Tree
	}
	objs, err := r.render(ctx, tree, g.Path)
	if err != nil {
		return fmt.Errorf("%w (no control run: the last passed candidate %s does not render: %v)", failure, short(passed), err)
	}
	ctl := spec
	ctl.Objects = objs
	ctl.Namespace = ControlNamespace(g.Name, c.Hash.String(), cr.key)
	ctl.Commands = nil
	ctl.KeepNamespace = 0
	ctl.Until = failure.Step
	r.log().Info("unrecognised error from the cluster: running a control with the last passed candidate", "gate", g.Name, "commit", short(c.Hash), "control", short(passed), "error", failure.Err)
	start := time.Now()
	_, cerr := r.env(g).Test(ctx, ctl, nil)
	cerr = stopForeign(g, cerr)
	cr.emit(Event{Gate: g.Name, Commit: c, Step: "control", Took: time.Since(start), Detail: fmt.Sprintf("last passed candidate %s: %s", short(passed), errText(cerr))})
	if cerr == nil {
		verb := map[string]string{testenv.StepApply: "applies", testenv.StepHealth: "becomes healthy", testenv.StepTests: "passes its tests"}[failure.Step]
		if verb == "" {
			verb = "passes " + failure.Step
		}
		return faultf(failure.Step, "the last passed candidate %s %s on the same cluster, so this is the commit's fault: %v", short(passed), verb, failure.Err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(cerr, ErrGateStopped) {
		return cerr
	}
	return fmt.Errorf("%w; the last passed candidate %s fails the same step on this cluster too (%v), so the cluster is at fault", failure, short(passed), cerr)
}

func errText(err error) string {
	if err == nil {
		return "passed"
	}
	return "failed too"
}

// candidate is a run's commit's tree with every excluded (pending
// rejected) commit reverted out, newest first, as `git revert` of each would.
func (r *Runner) candidate(ctx context.Context, cr *candidateRun) (plumbing.Hash, error) {
	c := cr.commit
	tree := c.Tree
	for i := len(cr.excluded) - 1; i >= 0; i-- {
		p := cr.excluded[i]
		next, err := r.Repo.Revert(ctx, p.Hash, tree)
		if err != nil {
			if errors.Is(err, gitrepo.ErrConflict) {
				return plumbing.ZeroHash, faultf(StepCandidate, "cannot test this commit without the rejected commit %s (%q): %v", short(p.Hash), p.Subject, err)
			}
			return plumbing.ZeroHash, fmt.Errorf("revert %s out of %s: %w", short(p.Hash), short(c.Hash), err)
		}
		tree = next
	}
	return tree, nil
}

// rendered is a gate's render of a candidate tree: what it read, its
// objects (shared: a run that changes them copies them first) and digest.
type rendered struct {
	tree   plumbing.Hash
	reads  manifests.ReadSet
	objs   []*unstructured.Unstructured
	digest string
	reused bool // taken from the gate's last render, not rendered
}

// renderCandidate renders gate g's path from a candidate tree, unless the
// gate's last successful render read nothing this tree changes: then its
// objects and digest are this tree's too (sameRender), and reused. Any
// doubt (no last render, trees that cannot be compared) means a render,
// after before. The last render is kept per gate, in memory, for the runs
// of every pass.
func (r *Runner) renderCandidate(ctx context.Context, g *Gate, tree plumbing.Hash, before func(context.Context) error) (rendered, error) {
	r.mu.Lock()
	last, ok := r.renders[g.Name]
	r.mu.Unlock()
	if ok && (last.tree == tree || r.unchangedInputs(ctx, last, tree)) {
		last.tree, last.reused = tree, true
		return last, nil
	}
	if err := before(ctx); err != nil {
		return rendered{}, err
	}
	objs, reads, err := r.renderReads(ctx, tree, g.Path, true)
	if err != nil {
		return rendered{}, err
	}
	rd := rendered{tree: tree, reads: reads, objs: objs, digest: manifests.Digest(objs)}
	if !reads.Empty() {
		r.mu.Lock()
		if r.renders == nil {
			r.renders = map[string]rendered{}
		}
		r.renders[g.Name] = rd
		r.mu.Unlock()
	}
	return rd, nil
}

// unchangedInputs reports whether tree differs from last's tree only at
// paths last's render did not read.
func (r *Runner) unchangedInputs(ctx context.Context, last rendered, tree plumbing.Hash) bool {
	changed, err := r.Repo.ChangedPaths(ctx, last.tree, tree)
	return err == nil && sameRender(last.reads, changed)
}

// render builds the gate's kustomization from a candidate tree.
func (r *Runner) render(ctx context.Context, tree plumbing.Hash, path string) ([]*unstructured.Unstructured, error) {
	objs, _, err := r.renderReads(ctx, tree, path, false)
	return objs, err
}

// renderReads is render that also returns what it read, when asked.
func (r *Runner) renderReads(ctx context.Context, tree plumbing.Hash, path string, withReads bool) ([]*unstructured.Unstructured, manifests.ReadSet, error) {
	return RenderTree(ctx, r.Repo, r.Render, tree, path, withReads)
}

// RenderTree renders path in tree as a candidate is rendered (opts zero:
// manifests.DefaultRenderOptions), with what it read when withReads is
// set. What the commit is at fault for, a render error or a tree or blob
// the tree reader refuses, is a *testenv.Fault at StepRender.
func RenderTree(ctx context.Context, repo *gitrepo.Repository, opts manifests.RenderOptions, tree plumbing.Hash, path string, withReads bool) ([]*unstructured.Unstructured, manifests.ReadSet, error) {
	if opts == (manifests.RenderOptions{}) {
		opts = manifests.DefaultRenderOptions()
	}
	var te *gitrepo.TreeError
	fsys, err := repo.TreeFS(ctx, tree, gitrepo.TreeOptions{MaxBlobSize: opts.MaxFileSize})
	if err != nil {
		if errors.As(err, &te) {
			return nil, manifests.ReadSet{}, &testenv.Fault{Step: StepRender, Msg: te.Error()}
		}
		return nil, manifests.ReadSet{}, fmt.Errorf("read tree %s: %w", short(tree), err)
	}
	var (
		objs  []*unstructured.Unstructured
		reads manifests.ReadSet
	)
	if withReads {
		objs, reads, err = manifests.RenderWithReads(ctx, fsys, path, opts)
	} else {
		objs, err = manifests.Render(ctx, fsys, path, opts)
	}
	if err != nil {
		var re *manifests.RenderError
		if errors.As(err, &re) {
			return nil, manifests.ReadSet{}, &testenv.Fault{Step: StepRender, Msg: re.Error()}
		}
		if errors.As(err, &te) { // a tree or blob the tree reader refuses
			return nil, manifests.ReadSet{}, &testenv.Fault{Step: StepRender, Msg: te.Error()}
		}
		return nil, manifests.ReadSet{}, fmt.Errorf("render %s: %w", path, err)
	}
	return objs, reads, nil
}

// pushRevert writes a revert of c on top of the source tip and pushes it,
// re-fetching and redoing it when someone pushed in between. A conflict
// stops the gate: it needs a person.
func (r *Runner) pushRevert(ctx context.Context, g *Gate, c gitrepo.Commit, reason string) (gitrepo.Revert, error) {
	start := time.Now()
	msg := gitrepo.RevertMessage(c, g.Name, reason)
	const attempts = 10
	for i := 0; i < attempts; i++ {
		if i > 0 {
			if err := r.Repo.Fetch(ctx, r.Source); err != nil {
				return gitrepo.Revert{}, fmt.Errorf("revert %s: %w", short(c.Hash), err)
			}
		}
		tip, err := r.Repo.Tip(ctx, r.Source)
		if err != nil {
			return gitrepo.Revert{}, err
		}
		// The source may hold a revert of c that this pass has not seen:
		// pushed by another gate draining at the same time (the fetch that
		// brought it is shared), or by a person. A second revert would be
		// an empty commit. One pushed after tip was read makes the push
		// below stale, and the next round finds it here.
		if rev, ok, err := r.revertAfter(ctx, c, tip); err != nil {
			return gitrepo.Revert{}, err
		} else if ok {
			r.log().Info("commit already reverted", "gate", g.Name, "commit", short(c.Hash), "revert", short(rev.Commit.Hash))
			r.emit(Event{Gate: g.Name, Commit: c, Step: "revert", Took: time.Since(start), Detail: fmt.Sprintf("already reverted by %s", short(rev.Commit.Hash)), Revert: rev.Commit.Hash})
			return rev, nil
		}
		head, err := r.Repo.Commit(ctx, tip)
		if err != nil {
			return gitrepo.Revert{}, err
		}
		tree, err := r.Repo.Revert(ctx, c.Hash, head.Tree)
		if err != nil {
			if errors.Is(err, gitrepo.ErrConflict) {
				r.emit(Event{Gate: g.Name, Commit: c, Step: "stopped", Detail: "revert conflicts"})
				return gitrepo.Revert{}, &StoppedError{Gate: g.Name, Reason: fmt.Sprintf("commit %s (%q) failed but reverting it on %s conflicts with later changes: %v; revert or fix it by hand", short(c.Hash), c.Subject, r.Source, err)}
			}
			return gitrepo.Revert{}, fmt.Errorf("revert %s: %w", short(c.Hash), err)
		}
		// The signature binds the message to this parent and tree: it
		// proves to a restarted Sluice that this revert is its own.
		rev, err := r.Repo.CommitTree(ctx, tree, tip, r.Key.SignRevert(msg, tip, tree))
		if err != nil {
			return gitrepo.Revert{}, fmt.Errorf("revert %s: %w", short(c.Hash), err)
		}
		err = r.Repo.Push(ctx, r.Source, tip, rev)
		if errors.Is(err, gitrepo.ErrStale) {
			r.log().Debug("source moved while pushing a revert, redoing it", "gate", g.Name, "commit", short(c.Hash))
			continue
		}
		if err != nil {
			return gitrepo.Revert{}, fmt.Errorf("push revert of %s: %w", short(c.Hash), err)
		}
		r.pushedSource()
		crashPoint("revert-pushed")
		revCommit, err := r.Repo.Commit(ctx, rev)
		if err != nil {
			return gitrepo.Revert{}, err
		}
		r.log().Info("revert pushed", "gate", g.Name, "commit", short(c.Hash), "revert", short(rev), slog.String("branch", r.Source))
		r.emit(Event{Gate: g.Name, Commit: c, Step: "revert", Took: time.Since(start), Detail: fmt.Sprintf("%s pushed to %s", short(rev), r.Source), Revert: rev})
		return gitrepo.Revert{Commit: revCommit, Rejected: c.Hash, Gate: g.Name}, nil
	}
	return gitrepo.Revert{}, fmt.Errorf("push revert of %s: %s kept moving (%d attempts)", short(c.Hash), r.Source, attempts)
}

// revertAfter finds a revert of c among the first-parent commits after c
// up to tip, by the evidence findReverts believes.
func (r *Runner) revertAfter(ctx context.Context, c gitrepo.Commit, tip plumbing.Hash) (gitrepo.Revert, bool, error) {
	later, err := r.Repo.Log(ctx, tip, c.Hash)
	if err != nil {
		return gitrepo.Revert{}, false, fmt.Errorf("revert %s: %w", short(c.Hash), err)
	}
	reverts, err := r.findReverts(ctx, later)
	if err != nil {
		return gitrepo.Revert{}, false, fmt.Errorf("revert %s: %w", short(c.Hash), err)
	}
	for _, rev := range reverts {
		if rev.Rejected == c.Hash {
			return rev, true, nil
		}
	}
	return gitrepo.Revert{}, false, nil
}

// stepFunc turns the test's steps into progress events, and holds the
// crash points inside a test.
func stepFunc(emit func(Event), gate string, c gitrepo.Commit) testenv.StepFunc {
	return func(step string, took time.Duration, detail string) {
		switch step {
		case testenv.StepNamespace:
			crashPoint("namespace-created")
			return
		case testenv.StepApply:
			defer crashPoint("applied")
		}
		emit(Event{Gate: gate, Commit: c, Step: step, Took: took, Detail: detail})
	}
}

// stopForeign stops the gate when its test namespace exists and is not
// Sluice's: a person has to look before anything is used or deleted.
func stopForeign(g *Gate, err error) error {
	var foreign *testenv.NotOwnedError
	if errors.As(err, &foreign) {
		return &StoppedError{Gate: g.Name, Reason: foreign.Error()}
	}
	return err
}

// RunNamespace names the test namespace of one planned run. A candidate
// with nothing reverted out gets its commit's namespace
// (manifests.TestNamespace); the others add a short hash of the run's key,
// since runs of one commit differ in the commits they leave out. It fits
// 63 bytes.
func RunNamespace(gate, commit, key string) string {
	if key == commit {
		return manifests.TestNamespace(gate, commit)
	}
	return namespaceWith(gate, commit, "-"+keyHash(key))
}

// ControlNamespace names the namespace of the control run of one planned
// run: the commit's namespace with "-ctl-" and a short hash of the run's
// key, so that two runs of one commit never share a control namespace. It
// fits 63 bytes.
func ControlNamespace(gate, commit, key string) string {
	return namespaceWith(gate, commit, "-ctl-"+keyHash(key))
}

func keyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])[:6]
}

// namespaceWith is the commit's namespace with suffix, the gate's name
// cut until it fits 63 bytes.
func namespaceWith(gate, commit, suffix string) string {
	ns := manifests.TestNamespace(gate, commit)
	for g := gate; len(ns)+len(suffix) > 63 && g != ""; {
		g = g[:len(g)-1]
		ns = manifests.TestNamespace(g, commit)
	}
	return ns + suffix
}
