package plan

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
)

// world is a source branch and a deterministic test: the runner the planner
// would have, without Git or a cluster. A candidate's content is the set of
// changes alive in tree(commit) with its exclusions reverted out; the
// oracle fails a content or not.
type world struct {
	source []Commit        // every commit after the starting target, oldest first
	docs   map[string]bool // commits that change nothing the render reads
	fails  func(content map[string]bool) bool
}

func (w *world) clone() *world {
	c := *w
	c.source = slices.Clone(w.source)
	return &c
}

func (w *world) index(id string) int {
	return slices.IndexFunc(w.source, func(c Commit) bool { return c.ID == id })
}

// content is the set of changes alive in tree(commit) minus excluded: a
// commit is alive unless excluded or reverted by an alive revert.
func (w *world) content(commit string, excluded []string) map[string]bool {
	idx := w.index(commit)
	if idx < 0 && commit != "" {
		panic("content of unknown commit " + commit)
	}
	killed := map[string]bool{}
	for _, e := range excluded {
		killed[e] = true
	}
	content := map[string]bool{}
	for j := idx; j >= 0; j-- {
		c := w.source[j]
		if killed[c.ID] {
			continue
		}
		if c.Reverts != "" {
			killed[c.Reverts] = true
		} else if !w.docs[c.ID] {
			content[c.ID] = true
		}
	}
	return content
}

func digest(content map[string]bool) string {
	var ks []string
	for k := range content {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}

func (w *world) verdict(commit string, excluded []string) (Verdict, string) {
	c := w.content(commit, excluded)
	if w.fails(c) {
		return Failed, digest(c)
	}
	return Passed, digest(c)
}

func revertID(c string) string { return "R(" + c + ")" }

// Oracles.
func brokenSet(broken ...string) func(map[string]bool) bool {
	return func(c map[string]bool) bool {
		for _, b := range broken {
			if c[b] {
				return true
			}
		}
		return false
	}
}

// together fails a candidate that holds both commits of a pair.
func together(pairs ...[2]string) func(map[string]bool) bool {
	return func(c map[string]bool) bool {
		for _, p := range pairs {
			if c[p[0]] && c[p[1]] {
				return true
			}
		}
		return false
	}
}

// repaired fails a candidate holding p[0] without p[1]: a later commit
// repairs an earlier one, which batching cannot see.
func repaired(pairs ...[2]string) func(map[string]bool) bool {
	return func(c map[string]bool) bool {
		for _, p := range pairs {
			if c[p[0]] && !c[p[1]] {
				return true
			}
		}
		return false
	}
}

// durable is what survives a crash: Git.
type durable struct {
	target   string // "" is the starting target
	notes    map[string]Verdict
	reverts  []string // commits reverted, in push order
	targets  []string // every value the target took
	tests    int
	verdicts []string // "commit verdict", in record order
}

func (d *durable) clone() durable {
	c := *d
	c.notes = map[string]Verdict{}
	for k, v := range d.notes {
		c.notes[k] = v
	}
	c.reverts, c.targets, c.verdicts = slices.Clone(d.reverts), slices.Clone(d.targets), slices.Clone(d.verdicts)
	return c
}

func (d *durable) queue(w *world) []Commit {
	return slices.Clone(w.source[w.index(d.target)+1:])
}

// serial is a transliteration of reconcile's Runner.Drain/pass (the gating
// Sluice did before the planner), independent of this package's code. It
// stops after limit events (records, pushes, fast-forwards) when limit > 0,
// which leaves the durable state of a crash.
func serial(w *world, d durable, revert bool, limit int) durable {
	events := 0
	stop := func() bool { events++; return limit > 0 && events >= limit }
	for pass := 0; pass < 1000; pass++ {
		queue := d.queue(w)
		if len(queue) == 0 {
			return d
		}
		reverts := firstReverts(queue)
		var pending []string
		lastPassed := digest(w.content(d.target, nil))
		seen := map[string]Verdict{}
		again := false
		for _, c := range queue {
			if c.Reverts != "" {
				pending = without(pending, c.Reverts)
			}
			v, known := d.notes[c.ID]
			if !known {
				if r, ok := reverts[c.ID]; ok && r.Ours {
					v = Failed
				} else {
					var dg string
					v, dg = w.verdict(c.ID, pending)
					if dg == lastPassed {
						v = Passed
					} else if prev, ok := seen[dg]; ok {
						v = prev
					} else {
						d.tests++
					}
					seen[dg] = v
				}
			}
			switch v {
			case Passed:
				lastPassed = digest(w.content(c.ID, pending))
				if !known {
					d.notes[c.ID] = v
					d.verdicts = append(d.verdicts, c.ID+" "+string(v))
					if stop() {
						return d
					}
				}
				if len(pending) == 0 && d.target != c.ID {
					d.target = c.ID
					d.targets = append(d.targets, c.ID)
					if stop() {
						return d
					}
				}
			case Failed:
				pending = append(pending, c.ID)
				if _, ok := reverts[c.ID]; !ok && revert {
					r := Commit{ID: revertID(c.ID), Reverts: c.ID, Ours: true}
					w.source = append(w.source, r)
					reverts[c.ID] = r
					d.reverts = append(d.reverts, c.ID)
					again = true
					if stop() {
						return d
					}
				}
				if !known {
					d.notes[c.ID] = v
					d.verdicts = append(d.verdicts, c.ID+" "+string(v))
					if stop() {
						return d
					}
				}
			}
		}
		if !again {
			return d
		}
	}
	panic("serial gating did not drain in 1000 passes")
}

// sim drives Next like the runner will, over w, from the durable state d.
type sim struct {
	opts      Options
	rng       *rand.Rand // nil: every test takes 1, results of one instant come together
	errorRate float64    // chance that a test ends in error (at most twice per candidate)
	crashRate float64    // chance of a crash (running tests lost, state rebuilt from Git) per step
}

type flight struct {
	run     Run
	end     int
	verdict Verdict
	reused  bool
	digest  string
}

type simResult struct {
	durable
	makespan int
	judged   map[string]Judgement
	crashes  int
	cancels  int
	errors   int
}

func (s sim) state(w *world, d *durable) State {
	st := State{Options: s.opts, Target: d.target, Queue: d.queue(w), Verdicts: map[string]Verdict{}}
	for k, v := range d.notes {
		st.Verdicts[k] = v
	}
	return st
}

func (s sim) run(t testing.TB, w *world, d durable) simResult {
	t.Helper()
	res := simResult{judged: map[string]Judgement{}}
	st := s.state(w, &d)
	var inflight []flight
	now := 0
	tested := map[string]Verdict{} // the runner's digest cache
	errs := map[string]int{}
	for step := 0; ; step++ {
		if step > 100000 {
			t.Fatalf("no end after %d steps", step)
		}
		p := Next(st)
		if q := Next(st); fmt.Sprint(q) != fmt.Sprint(p) {
			t.Fatalf("Next is not a function of its state:\n%v\n%v", p, q)
		}
		crash := -1 // crash after this many actions of the plan
		if s.rng != nil && s.rng.Float64() < s.crashRate {
			crash = s.rng.IntN(len(p.Revert) + len(p.Verdicts) + 2)
		}
		actions := 0
		act := func() bool { actions++; return actions == crash }
		for _, r := range p.Cancel {
			if !slices.ContainsFunc(inflight, func(f flight) bool { return f.run.Key == r.Key }) {
				t.Fatalf("cancel of %s, which is not running", r.Key)
			}
			inflight = slices.DeleteFunc(inflight, func(f flight) bool { return f.run.Key == r.Key })
			res.cancels++
		}
		crashed := false
		for _, c := range p.Revert {
			if slices.ContainsFunc(w.source, func(x Commit) bool { return x.Reverts == c }) {
				t.Fatalf("revert of %s asked again, but it is in the source", c)
			}
			r := Commit{ID: revertID(c), Reverts: c, Ours: true}
			w.source = append(w.source, r)
			st.Queue = append(st.Queue, r)
			d.reverts = append(d.reverts, c)
			if act() {
				crashed = true
				break
			}
		}
		for _, v := range p.Verdicts {
			if crashed {
				break
			}
			if v.Verdict != Passed && v.Verdict != Failed {
				t.Fatalf("verdict %q decided for %s", v.Verdict, v.Commit)
			}
			if _, ok := d.notes[v.Commit]; ok {
				t.Fatalf("%s decided twice", v.Commit)
			}
			d.notes[v.Commit] = v.Verdict
			d.verdicts = append(d.verdicts, v.Commit+" "+string(v.Verdict))
			res.judged[v.Commit] = v.Judgement
			if act() {
				crashed = true
			}
		}
		if !crashed && p.FastForward != "" {
			if w.index(p.FastForward) <= w.index(d.target) {
				t.Fatalf("fast-forward from %s back to %s", d.target, p.FastForward)
			}
			if w.fails(w.content(p.FastForward, nil)) {
				t.Fatalf("target moved to %s, whose tree fails", p.FastForward)
			}
			d.target = p.FastForward
			d.targets = append(d.targets, p.FastForward)
			crashed = act()
		}
		if crashed || crash >= 0 {
			res.crashes++
			inflight = nil
			st = s.state(w, &d)
			continue
		}
		st.Apply(p)
		for _, r := range p.Start {
			if slices.ContainsFunc(inflight, func(f flight) bool { return f.run.Key == r.Key }) {
				t.Fatalf("start of %s, which is running", r.Key)
			}
			f := flight{run: r, end: now + 1}
			if s.rng != nil {
				f.end = now + 1 + s.rng.IntN(4)
			}
			f.verdict, f.digest = w.verdict(r.Commit, r.Excluded)
			switch prev, ok := tested[f.digest]; {
			case ok:
				f.verdict, f.reused, f.end = prev, true, now
			case s.rng != nil && errs[r.Key] < 2 && s.rng.Float64() < s.errorRate:
				errs[r.Key]++
				res.errors++
				f.verdict = Error
			default:
				d.tests++
			}
			inflight = append(inflight, f)
		}
		if p.Done {
			if len(st.Running) > 0 || len(inflight) > 0 {
				t.Fatalf("done with %d runs running", len(inflight))
			}
			break
		}
		if len(inflight) == 0 && len(p.Revert) > 0 {
			continue // the reverts are new commits to plan for
		}
		if len(inflight) == 0 {
			t.Fatalf("stuck: nothing running and not done; plan %+v", p)
		}
		// Deliver the results of the next instant: all of them, or one
		// chosen at random (a random completion order).
		now = slices.MinFunc(inflight, func(a, b flight) int { return a.end - b.end }).end
		var due []flight
		inflight = slices.DeleteFunc(inflight, func(f flight) bool {
			if f.end == now {
				due = append(due, f)
				return true
			}
			return false
		})
		if s.rng != nil {
			s.rng.Shuffle(len(due), func(i, j int) { due[i], due[j] = due[j], due[i] })
			if s.rng.IntN(2) == 0 {
				inflight = append(inflight, due[1:]...)
				due = due[:1]
			}
		}
		for _, f := range due {
			if f.verdict != Error && !f.reused {
				tested[f.digest] = f.verdict
			}
			st.Observe(Result{Run: f.run, Verdict: f.verdict, Reused: f.reused})
		}
	}
	res.durable, res.makespan = d, now
	return res
}

// isSubsequence reports whether every element of sub is in seq, in order.
func isSubsequence(sub, seq []string) bool {
	i := 0
	for _, s := range seq {
		if i < len(sub) && sub[i] == s {
			i++
		}
	}
	return i == len(sub)
}

// sameAsSerial fails t unless got gives serial gating's verdicts (in the
// same order), reverts and final target, and its targets are a subsequence
// of serial's.
func sameAsSerial(t testing.TB, want durable, got simResult) {
	t.Helper()
	if !slices.Equal(want.verdicts, got.verdicts) {
		t.Errorf("verdicts:\n serial %v\n   plan %v", want.verdicts, got.verdicts)
	}
	if !slices.Equal(want.reverts, got.reverts) {
		t.Errorf("reverts: serial %v, plan %v", want.reverts, got.reverts)
	}
	if want.target != got.target {
		t.Errorf("final target: serial %q, plan %q", want.target, got.target)
	}
	if !isSubsequence(got.targets, want.targets) {
		t.Errorf("targets %v are not a subsequence of serial's %v", got.targets, want.targets)
	}
}

func commits(ids ...string) []Commit {
	var cs []Commit
	for _, id := range ids {
		cs = append(cs, Commit{ID: id})
	}
	return cs
}

func newDurable() durable { return durable{notes: map[string]Verdict{}} }
