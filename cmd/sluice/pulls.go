package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sluice-gitops/sluice/forge"
	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/manifests"
	"github.com/sluice-gitops/sluice/reconcile"
	"github.com/sluice-gitops/sluice/testenv"
)

// Bounds of the pull request previews.
const (
	// maxPullsPerPass is how many open pull requests into the source
	// branch are looked at after a drain, the most recently updated first.
	maxPullsPerPass = 20
	// pullFetchTimeout bounds the fetch of one pull request's head.
	pullFetchTimeout = 2 * time.Minute
	// maxPullMemo bounds the judgements remembered; past it they are
	// forgotten at once, and pull requests are judged again.
	maxPullMemo = 10000
)

func previewContext(gate string) string { return statusContext(gate) + "/preview" }

// pullChecks gives each open pull request into the source branch that
// touches a gate a preview verdict, the status sluice/<gate>/preview on its
// head: the pull request's changes since its merge base, put file by file
// on top of the queue's current candidate (gitrepo's Overlay, as previews
// do), rendered and tested in a namespace of their own like a candidate.
// It moves no branch, writes no note and reverts nothing; its namespaces
// are the gate's (labelled as Sluice's, removed after the test).
//
// The queue comes first: a gate's pull requests are looked at only after a
// drain that left its queue empty (the current candidate is then the source
// branch's tip, which the gate passed), one test at a time, and a commit
// queued meanwhile ends the pass before the next test. What was judged is
// remembered in memory (pullMemo): a pull request is tested again only when
// its head or what it renders to changes.
type pullChecks struct {
	forge  forge.Forge
	post   func(forge.Status) bool // forge.Poster.Replace
	repo   *gitrepo.Repository
	source string
	render manifests.RenderOptions
	env    func(*reconcile.Gate) reconcile.Tester
	log    *slog.Logger
	// wake, if set, makes a gate drain now: a commit was queued while its
	// pull requests were looked at (the daemon's Runner.WakeGates; a gate
	// another replica leads is its leader's to wake).
	wake func(gates ...string)

	memo *pullMemo

	mu     sync.Mutex
	cands  map[string]*pullCandidate // gate -> its last candidate, rendered
	listed map[string]string         // gate -> the last listing error logged
}

// newPullChecks returns the pull request previews of r's gates, posted
// through p; nil without a forge.
func newPullChecks(r *reconcile.Runner, p *forge.Poster, log *slog.Logger) *pullChecks {
	if p == nil {
		return nil
	}
	render := r.Render
	if render == (manifests.RenderOptions{}) {
		render = manifests.DefaultRenderOptions()
	}
	return &pullChecks{
		forge: p.Forge(), post: p.Replace, repo: r.Repo, source: r.Source, render: render,
		env: func(g *reconcile.Gate) reconcile.Tester {
			if g.Env != nil {
				return g.Env
			}
			return r.Env
		},
		log: log, memo: newPullMemo(), cands: map[string]*pullCandidate{}, listed: map[string]string{},
	}
}

// hook looks at the pull requests of a gate after each of its drains that
// ended well, keeping r's OnDrain. A gate's drains run in the goroutine
// that holds its lead, so only the replica leading a gate tests its pull
// requests, and never while the gate drains.
func (c *pullChecks) hook(ctx context.Context, r *reconcile.Runner) {
	if c == nil {
		return
	}
	c.wake = r.WakeGates
	drained := r.OnDrain
	r.OnDrain = func(gate string, err error) {
		if drained != nil {
			drained(gate, err)
		}
		if err != nil {
			return
		}
		for i := range r.Gates {
			if r.Gates[i].Name == gate {
				c.pass(ctx, &r.Gates[i])
			}
		}
	}
}

// once looks at every gate's pull requests once, the gates at the same
// time: `run --once`, after the queues drained.
func (c *pullChecks) once(ctx context.Context, gates []reconcile.Gate) {
	if c == nil {
		return
	}
	var wg sync.WaitGroup
	for i := range gates {
		wg.Go(func() { c.pass(ctx, &gates[i]) })
	}
	wg.Wait()
}

// pullCandidate is the queue's current candidate of a gate: the source
// branch's tip when nothing waits in the queue.
type pullCandidate struct {
	commit, tree plumbing.Hash
	objs         []*unstructured.Unstructured // shared: copied before a test
	reads        manifests.ReadSet
	digest       string
}

// pass judges the gate's open pull requests, one at a time.
func (c *pullChecks) pass(ctx context.Context, g *reconcile.Gate) {
	log := c.log.With("gate", g.Name)
	cand, err := c.candidate(ctx, g)
	if err != nil {
		log.Warn("pull request previews skipped: no candidate", "error", err)
		return
	}
	if cand == nil {
		log.Debug("pull request previews wait: the queue is not empty")
		return
	}
	prs, err := c.forge.PullRequests(ctx, c.source, maxPullsPerPass)
	c.mu.Lock()
	said := c.listed[g.Name]
	c.listed[g.Name] = errText(err)
	c.mu.Unlock()
	if err != nil {
		if said != err.Error() {
			msg := "could not list pull requests, will retry after the next drain"
			if errors.Is(err, forge.ErrAccess) {
				msg = "the forge refused to list pull requests: fix forge: in the config (token or repository)"
			}
			log.Warn(msg, "forge", c.forge.Name(), "error", err)
		}
		return
	}
	if len(prs) < maxPullsPerPass {
		// Every open pull request was listed: the refs of closed ones go.
		open := make([]int64, 0, len(prs))
		for _, pr := range prs {
			open = append(open, pr.Number)
		}
		if _, err := c.repo.PrunePulls(ctx, open); err != nil {
			log.Warn("could not remove the refs of closed pull requests", "error", err)
		}
	}
	for _, pr := range prs {
		if ctx.Err() != nil {
			return
		}
		if !c.one(ctx, g, cand, pr) {
			return
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// candidate fetches the source and target branches and returns the gate's
// current candidate, rendered, or nil while the queue is not empty.
func (c *pullChecks) candidate(ctx context.Context, g *reconcile.Gate) (*pullCandidate, error) {
	if err := c.repo.Fetch(ctx, c.source, g.Target); err != nil {
		return nil, err
	}
	q, err := c.repo.Queue(ctx, c.source, g.Target)
	if err != nil || len(q) > 0 {
		return nil, err
	}
	tip, err := c.repo.Tip(ctx, c.source)
	if err != nil {
		return nil, err
	}
	tc, err := c.repo.Commit(ctx, tip)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	last := c.cands[g.Name]
	c.mu.Unlock()
	if last != nil && last.tree == tc.Tree {
		return &pullCandidate{commit: tip, tree: tc.Tree, objs: last.objs, reads: last.reads, digest: last.digest}, nil
	}
	objs, reads, err := reconcile.RenderTree(ctx, c.repo, c.render, tc.Tree, g.Path, true)
	if err != nil {
		return nil, fmt.Errorf("render %s at %s: %w", g.Path, shortSHA(tip.String()), err)
	}
	cand := &pullCandidate{commit: tip, tree: tc.Tree, objs: objs, reads: reads, digest: manifests.Digest(objs)}
	c.mu.Lock()
	c.cands[g.Name] = cand
	c.mu.Unlock()
	return cand, nil
}

// queued reports whether a commit entered the gate's queue since cand was
// taken: the queue then goes first.
func (c *pullChecks) queued(ctx context.Context, g *reconcile.Gate, cand *pullCandidate) bool {
	if err := c.repo.Fetch(ctx, c.source, g.Target); err != nil {
		return true // the gate's next drain says what is wrong
	}
	tip, err := c.repo.Tip(ctx, c.source)
	return err != nil || tip != cand.commit
}

// one judges one pull request and posts its status, unless it was judged
// already or touches nothing the gate renders. It returns false when the
// pass must end: a commit was queued.
func (c *pullChecks) one(ctx context.Context, g *reconcile.Gate, cand *pullCandidate, pr forge.PullRequest) bool {
	log := c.log.With("gate", g.Name, "pull", pr.Number)
	if err := checkPull(pr); err != nil {
		log.Warn("pull request skipped", "error", err)
		return true
	}
	onto := cand.tree.String()
	if input, ok := c.memo.decided(g.Name, pr.Head, fetchRefused); ok {
		c.repost(g.Name, pr.Head, input)
		return true
	}
	if input, ok := c.memo.decided(g.Name, pr.Head, onto); ok {
		log.Debug("pull request already judged on this candidate", "head", shortSHA(pr.Head))
		c.repost(g.Name, pr.Head, input)
		return true
	}
	fctx, cancel := context.WithTimeout(ctx, pullFetchTimeout)
	head, err := c.repo.FetchPull(fctx, pr.Ref, pr.Number, gitrepo.MaxPullFetch)
	cancel()
	if errors.Is(err, gitrepo.ErrFetchTooLarge) {
		// The pull request's own doing, whatever the candidate: judged
		// once per head, never fetched again.
		st := previewStatus(g.Name, c.source, cand.commit, plumbing.NewHash(pr.Head), pullOutcome{kind: pullTooLarge, reason: err.Error()})
		c.memo.remember(g.Name, pr.Head, fetchRefused, fetchRefused, &st)
		c.repost(g.Name, pr.Head, fetchRefused)
		log.Warn("pull request not fetched: too large", "ref", pr.Ref, "error", err)
		return true
	}
	if err != nil {
		log.Warn("pull request not fetched, will retry after the next drain", "ref", pr.Ref, "error", err)
		return true
	}
	h := head.String()
	if h != pr.Head {
		// Pushed to since it was listed: judge what is there now.
		if input, ok := c.memo.decided(g.Name, h, onto); ok {
			c.repost(g.Name, h, input)
			return true
		}
	}
	log = log.With("head", shortSHA(h))
	j, err := c.judge(ctx, g, cand, pr.Number, head, log)
	switch {
	case errors.Is(err, errQueued):
		if c.wake != nil {
			c.wake(g.Name)
		}
		return false
	case err != nil:
		if ctx.Err() == nil {
			log.Warn("pull request not judged, will retry after the next drain", "error", err)
		}
		return true
	}
	c.memo.remember(g.Name, h, onto, j.input, j.status)
	c.repost(g.Name, h, j.input)
	if j.status != nil {
		log.Info("pull request judged", "state", j.status.State, "description", j.status.Description)
	}
	return true
}

// repost posts the status remembered for head and input unless it is the
// one the forge shows.
func (c *pullChecks) repost(gate, head, input string) {
	s, ok := c.memo.shown(gate, head, input)
	if ok {
		c.post(s)
	}
}

// errQueued ends a pass: a commit entered the queue.
var errQueued = errors.New("a commit was queued")

// pullJudgement is what a pull request's head on top of a candidate came
// to: the input it was judged by, and the status to post (nil: it touches
// nothing of the gate).
type pullJudgement struct {
	input  string
	status *forge.Status
}

// judge builds the pull request's tree on top of the candidate, renders
// and tests it. An error is nobody's verdict: the pull request is judged
// again after the next drain.
func (c *pullChecks) judge(ctx context.Context, g *reconcile.Gate, cand *pullCandidate, n int64, head plumbing.Hash, log *slog.Logger) (pullJudgement, error) {
	mb, err := c.repo.MergeBase(ctx, head, cand.commit)
	if err != nil {
		return pullJudgement{}, err
	}
	base, err := c.repo.Commit(ctx, mb)
	if err != nil {
		return pullJudgement{}, err
	}
	hc, err := c.repo.Commit(ctx, head)
	if err != nil {
		return pullJudgement{}, err
	}
	verdict := func(input string, o pullOutcome) (pullJudgement, error) {
		s := previewStatus(g.Name, c.source, cand.commit, head, o)
		return pullJudgement{input: input, status: &s}, nil
	}
	changed, err := c.repo.ChangedPaths(ctx, base.Tree, hc.Tree)
	var te *gitrepo.TreeError
	if errors.As(err, &te) {
		return verdict("tree "+hc.Tree.String(), pullOutcome{kind: pullFailed, reason: "render: " + te.Error()})
	}
	if err != nil {
		return pullJudgement{}, err
	}
	if !touchesGate(changed, g.Path, cand.reads) {
		return pullJudgement{input: ""}, nil
	}
	tree, err := c.repo.Overlay(ctx, base.Tree, hc.Tree, cand.tree)
	var ce *gitrepo.OverlayConflictError
	if errors.As(err, &ce) {
		return verdict("onto "+cand.tree.String(), pullOutcome{kind: pullConflict, paths: ce.Paths})
	}
	if err != nil {
		return pullJudgement{}, err
	}
	objs, _, err := reconcile.RenderTree(ctx, c.repo, c.render, tree, g.Path, false)
	if testenv.IsFault(err) {
		return verdict("tree "+tree.String(), pullOutcome{kind: pullFailed, reason: err.Error()})
	}
	if err != nil {
		return pullJudgement{}, err
	}
	digest := manifests.Digest(objs)
	input := "digest " + digest
	if _, ok := c.memo.judged(g.Name, head.String(), input); ok {
		return pullJudgement{input: input}, nil
	}
	if digest == cand.digest {
		return verdict(input, pullOutcome{kind: pullPassed, same: true})
	}
	if c.queued(ctx, g, cand) {
		return pullJudgement{}, errQueued
	}
	key := "pull/" + strconv.FormatInt(n, 10) + "/" + cand.commit.String()
	spec := testenv.TestSpec{
		Gate:             g.Name,
		Commit:           head.String(),
		Namespace:        reconcile.RunNamespace(g.Name, head.String(), key),
		Objects:          objs,
		ClusterScoped:    g.ClusterScoped,
		ApplyTimeout:     g.ApplyTimeout,
		HealthTimeout:    g.HealthTimeout,
		TestsTimeout:     g.TestsTimeout,
		Commands:         g.Commands,
		ApplyConcurrency: g.ApplyConcurrency,
	}
	c.post(previewStatus(g.Name, c.source, cand.commit, head, pullOutcome{kind: pullTesting, namespace: spec.Namespace}))
	c.memo.shownNow(g.Name, head.String(), "")
	log.Info("testing pull request", "namespace", spec.Namespace, "onto", shortSHA(cand.commit.String()))
	_, err = c.env(g).Test(ctx, spec, nil)
	var unrecognised *testenv.UnrecognisedError
	if errors.As(err, &unrecognised) {
		err = c.control(ctx, g, cand, spec, key, unrecognised)
	}
	switch {
	case err == nil:
		return verdict(input, pullOutcome{kind: pullPassed})
	case ctx.Err() != nil:
		return pullJudgement{}, err
	case testenv.IsFault(err):
		return verdict(input, pullOutcome{kind: pullFailed, reason: err.Error()})
	}
	// The cluster's fault, not the pull request's: say so, and try again.
	c.post(previewStatus(g.Name, c.source, cand.commit, head, pullOutcome{kind: pullError, reason: err.Error()}))
	c.memo.shownNow(g.Name, head.String(), "")
	return pullJudgement{}, err
}

// control settles an error answer Sluice does not recognise as the
// runner does: the same step with the candidate, which the gate passed.
// It passes: the pull request's fault. It fails: the cluster's.
func (c *pullChecks) control(ctx context.Context, g *reconcile.Gate, cand *pullCandidate, spec testenv.TestSpec, key string, failure *testenv.UnrecognisedError) error {
	ctl := spec
	ctl.Objects = make([]*unstructured.Unstructured, len(cand.objs))
	for i, o := range cand.objs {
		ctl.Objects[i] = o.DeepCopy()
	}
	ctl.Namespace = reconcile.ControlNamespace(g.Name, spec.Commit, key)
	ctl.Commands, ctl.Until = nil, failure.Step
	if _, err := c.env(g).Test(ctx, ctl, nil); err != nil {
		return fmt.Errorf("%w; the candidate %s fails the same step on this cluster too (%v), so the cluster is at fault", failure, shortSHA(cand.commit.String()), err)
	}
	return &testenv.Fault{Step: failure.Step, Msg: fmt.Sprintf("the candidate %s passes it on the same cluster: %v", shortSHA(cand.commit.String()), failure.Err)}
}

// checkPull refuses a pull request whose ref is not the one its forge
// serves its head at for its number.
func checkPull(pr forge.PullRequest) error {
	n := strconv.FormatInt(pr.Number, 10)
	if pr.Number <= 0 || (pr.Ref != "refs/pull/"+n+"/head" && pr.Ref != "refs/merge-requests/"+n+"/head") {
		return fmt.Errorf("pull request %d: ref %q is not its head's", pr.Number, pr.Ref)
	}
	if len(pr.Head) != 40 || strings.Trim(pr.Head, "0123456789abcdef") != "" {
		return fmt.Errorf("pull request %d: head %q is not a full commit hash", pr.Number, forge.Truncate(pr.Head, 64))
	}
	return nil
}

// touchesGate reports whether a pull request that changed these paths
// (relative to the root) can change what the gate renders: a path under
// the gate's path, or one the candidate's render read (at, above or below
// one of reads.Paths, at or above one of reads.Dirs; see
// manifests.ReadSet), such as a base in ../../services. Documentation
// elsewhere does not.
func touchesGate(changed []string, gatePath string, reads manifests.ReadSet) bool {
	gatePath = path.Clean(gatePath)
	within := func(p, dir string) bool { return dir == "." || p == dir || strings.HasPrefix(p, dir+"/") }
	for _, c := range changed {
		if within(c, gatePath) {
			return true
		}
		for _, p := range reads.Paths {
			if within(c, p) || within(p, c) {
				return true
			}
		}
		for _, d := range reads.Dirs {
			if within(d, c) {
				return true
			}
		}
	}
	return false
}

// pullOutcome is what a preview came to, for its status.
type pullOutcome struct {
	kind      string
	reason    string   // pullFailed, pullError
	paths     []string // pullConflict
	namespace string   // pullTesting
	same      bool     // pullPassed: renders exactly as the candidate
}

const (
	pullTesting  = "testing"
	pullPassed   = "passed"
	pullFailed   = "failed"
	pullConflict = "conflict"
	pullError    = "error"
	pullTooLarge = "too large"
)

// fetchRefused is the memo's candidate and input of a head whose fetch
// went past its bound: it stands whatever the candidate.
const fetchRefused = "fetch refused"

// previewStatus is the status sluice/<gate>/preview on head for o. A
// failure names its reason (the object and field, as a candidate's
// verdict does). A conflict is no verdict on the pull request's content,
// but needs its author: it is an `error` that asks for a rebase. The
// cluster's errors stay pending with their reason: Sluice tries again.
func previewStatus(gate, source string, cand, head plumbing.Hash, o pullOutcome) forge.Status {
	s := forge.Status{Commit: head.String(), Context: previewContext(gate)}
	on := shortSHA(cand.String())
	switch o.kind {
	case pullTesting:
		s.State, s.Description = forge.Pending, "testing on top of "+on+" in "+o.namespace
	case pullPassed:
		s.State, s.Description = forge.Success, "would pass "+gate+" on top of "+on
		if o.same {
			s.Description += " (renders the same)"
		}
	case pullFailed:
		s.State, s.Description = forge.Failure, "would fail "+gate+" on top of "+on+": "+firstLine(o.reason)
	case pullConflict:
		files := o.paths[0]
		if len(o.paths) > 1 {
			files += fmt.Sprintf(" and %d more", len(o.paths)-1)
		}
		s.State, s.Description = forge.Error, "conflicts with "+files+" in the queue; rebase on "+source
	case pullTooLarge:
		s.State, s.Description = forge.Failure, "not tested: "+firstLine(o.reason)
	default:
		s.State, s.Description = forge.Pending, "not judged yet, will retry: "+firstLine(o.reason)
	}
	return s
}

// pullMemo remembers what pull requests came to, in memory and bounded.
type pullMemo struct {
	mu sync.Mutex
	// decided: gate, head, candidate tree -> the input the head was judged
	// by there ("" when it touches nothing of the gate). The same head on
	// the same candidate needs no fetch, overlay or render.
	decisions map[string]string
	// verdicts: gate, head, input -> the status posted. The same head
	// rendering the same on another candidate needs no test.
	verdicts map[string]forge.Status
	// current: gate, head -> the input of the status the forge shows.
	current map[string]string
}

func newPullMemo() *pullMemo {
	return &pullMemo{decisions: map[string]string{}, verdicts: map[string]forge.Status{}, current: map[string]string{}}
}

func memoKey(parts ...string) string { return strings.Join(parts, "\x00") }

// decided returns the input head was judged by on top of the candidate
// tree onto, if it was.
func (m *pullMemo) decided(gate, head, onto string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	in, ok := m.decisions[memoKey(gate, head, onto)]
	return in, ok
}

// judged returns the status head got for input, if it was judged.
func (m *pullMemo) judged(gate, head, input string) (forge.Status, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.verdicts[memoKey(gate, head, input)]
	return s, ok
}

// remember records that head on top of onto came to input, and, when it
// touches the gate, that input came to s (nil: already remembered).
func (m *pullMemo) remember(gate, head, onto, input string, s *forge.Status) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.decisions)+len(m.verdicts) > maxPullMemo {
		clear(m.decisions)
		clear(m.verdicts)
		clear(m.current)
	}
	m.decisions[memoKey(gate, head, onto)] = input
	if s != nil {
		m.verdicts[memoKey(gate, head, input)] = *s
	}
}

// shown returns the status to post for head's input, unless the forge
// shows it already, and takes it as shown.
func (m *pullMemo) shown(gate, head, input string) (forge.Status, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.verdicts[memoKey(gate, head, input)]
	if input == "" || !ok || m.current[memoKey(gate, head)] == input {
		return forge.Status{}, false
	}
	m.current[memoKey(gate, head)] = input
	return s, true
}

// shownNow records that the forge shows a status of head that is no
// remembered verdict ("testing").
func (m *pullMemo) shownNow(gate, head, input string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.current[memoKey(gate, head)] = input
}
