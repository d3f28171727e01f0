package plan

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// strategies are the planners every queue shape is drained with.
var strategies = []Options{
	{Strategy: Serial},
	{Strategy: Speculative, Min: 1, Max: 3},
	{Strategy: Speculative, Min: 1, Max: 8},
	{Strategy: Speculative, Min: 2, Max: 8},
	{Strategy: Batch, Batch: 2},
	{Strategy: Batch, Batch: 8},
}

func (o Options) String() string {
	switch o.Strategy {
	case Speculative:
		return fmt.Sprintf("speculative %d..%d", o.Min, o.Max)
	case Batch:
		return fmt.Sprintf("batch of %d", o.Batch)
	}
	return string(o.Strategy)
}

// verdictList turns "a+ b-" into serial's record list.
func verdictList(s string) []string {
	var vs []string
	for _, f := range strings.Fields(s) {
		v := Passed
		if strings.HasSuffix(f, "-") {
			v = Failed
		}
		vs = append(vs, f[:len(f)-1]+" "+string(v))
	}
	return vs
}

func TestQueueShapes(t *testing.T) {
	revertOf := func(id, of string, ours bool) Commit { return Commit{ID: id, Reverts: of, Ours: ours} }
	tests := []struct {
		name     string
		source   []Commit
		docs     []string
		fails    func(map[string]bool) bool
		noRevert bool
		target   string             // the starting target, "" for before the source
		notes    map[string]Verdict // recorded before the start
		// One-at-a-time gating's outcome, written by hand: the verdicts
		// recorded from the start on (a+ passed, a- failed), the commits it
		// reverts and every value the target takes.
		verdicts string
		reverts  []string
		targets  []string
		// how some commits must be judged, by every strategy
		how map[string]How
	}{
		{
			name:  "an empty queue does nothing",
			fails: brokenSet(),
		},
		{
			name:     "a queue of good commits moves the target commit by commit",
			source:   commits("a", "b", "c", "d"),
			fails:    brokenSet(),
			verdicts: "a+ b+ c+ d+",
			targets:  []string{"a", "b", "c", "d"},
		},
		{
			name:     "a broken first commit holds the target until its revert passes",
			source:   commits("a", "b", "c"),
			fails:    brokenSet("a"),
			verdicts: "a- b+ c+ R(a)+",
			reverts:  []string{"a"},
			targets:  []string{"R(a)"},
		},
		{
			name:     "a broken last commit is reverted after the others moved the target",
			source:   commits("a", "b", "c"),
			fails:    brokenSet("c"),
			verdicts: "a+ b+ c- R(c)+",
			reverts:  []string{"c"},
			targets:  []string{"a", "b", "R(c)"},
		},
		{
			name:     "adjacent broken commits are both reverted, in order",
			source:   commits("a", "b", "c", "d"),
			fails:    brokenSet("b", "c"),
			verdicts: "a+ b- c- d+ R(b)+ R(c)+",
			reverts:  []string{"b", "c"},
			targets:  []string{"a", "R(c)"},
		},
		{
			name:     "every commit broken",
			source:   commits("a", "b", "c"),
			fails:    brokenSet("a", "b", "c"),
			verdicts: "a- b- c- R(a)+ R(b)+ R(c)+",
			reverts:  []string{"a", "b", "c"},
			targets:  []string{"R(c)"},
		},
		{
			name:     "two commits that only fail together: the later one is rejected",
			source:   commits("a", "b", "c", "d"),
			fails:    together([2]string{"a", "c"}),
			verdicts: "a+ b+ c- d+ R(c)+",
			reverts:  []string{"c"},
			targets:  []string{"a", "b", "R(c)"},
		},
		{
			name:     "a revert Sluice pushed before a crash is the verdict, and is not pushed again",
			source:   []Commit{{ID: "a"}, {ID: "b"}, revertOf("R(a)", "a", true)},
			fails:    brokenSet("a"),
			verdicts: "a- b+ R(a)+",
			targets:  []string{"R(a)"},
			how:      map[string]How{"a": ByRevert},
		},
		{
			name:     "without reverts a failed commit stays out of every candidate and holds the target",
			source:   commits("a", "b", "c"),
			fails:    brokenSet("b"),
			noRevert: true,
			verdicts: "a+ b- c+",
			targets:  []string{"a"},
		},
		{
			name:     "resuming after a crash reuses the recorded verdicts and pushes the missing revert",
			source:   commits("a", "b", "c", "d"),
			fails:    brokenSet("b"),
			target:   "a",
			notes:    map[string]Verdict{"a": Passed, "b": Failed},
			verdicts: "c+ d+ R(b)+",
			reverts:  []string{"b"},
			targets:  []string{"R(b)"},
		},
		{
			name:     "a person's revert of a broken commit ends its exclusion; Sluice pushes none",
			source:   []Commit{{ID: "a"}, {ID: "b"}, {ID: "c"}, revertOf("P", "b", false), {ID: "d"}},
			fails:    brokenSet("b"),
			verdicts: "a+ b- c+ P+ d+",
			targets:  []string{"a", "P", "d"},
		},
		{
			name:     "a person's revert of a good commit is tested like any commit",
			source:   []Commit{{ID: "a"}, {ID: "b"}, revertOf("P", "a", false), {ID: "c"}},
			fails:    together([2]string{"a", "c"}),
			verdicts: "a+ b+ P+ c+",
			targets:  []string{"a", "b", "P", "c"},
		},
		{
			name:     "documentation commits pass without a test, and move the target",
			source:   commits("a", "doc1", "b", "doc2"),
			docs:     []string{"doc1", "doc2"},
			fails:    brokenSet("b"),
			verdicts: "a+ doc1+ b- doc2+ R(b)+",
			reverts:  []string{"b"},
			targets:  []string{"a", "doc1", "R(b)"},
		},
		{
			name:     "a failure in the middle of a long queue",
			source:   commits("a", "b", "c", "d", "e", "f", "g", "h", "i", "j"),
			fails:    brokenSet("e"),
			verdicts: "a+ b+ c+ d+ e- f+ g+ h+ i+ j+ R(e)+",
			reverts:  []string{"e"},
			targets:  []string{"a", "b", "c", "d", "R(e)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &world{source: tt.source, docs: map[string]bool{}, fails: tt.fails}
			for _, d := range tt.docs {
				w.docs[d] = true
			}
			start := newDurable()
			start.target = tt.target
			for k, v := range tt.notes {
				start.notes[k] = v
			}
			ws := w.clone()
			want := serial(ws, start.clone(), !tt.noRevert, 0)
			if got := verdictList(tt.verdicts); !slices.Equal(got, want.verdicts) {
				t.Fatalf("serial reference verdicts %v, want %v", want.verdicts, got)
			}
			if !slices.Equal(tt.reverts, want.reverts) || !slices.Equal(tt.targets, want.targets) {
				t.Fatalf("serial reference reverts %v targets %v, want %v %v", want.reverts, want.targets, tt.reverts, tt.targets)
			}
			for _, o := range strategies {
				t.Run(o.String(), func(t *testing.T) {
					o.Revert = !tt.noRevert
					got := sim{opts: o}.run(t, w.clone(), start.clone())
					sameAsSerial(t, want, got)
					for c, how := range tt.how {
						if got.judged[c].How != how {
							t.Errorf("%s judged %q, want %q", c, got.judged[c], how)
						}
					}
				})
			}
		})
	}
}

// TestSpeculativeFailure follows one failure through a window of four.
func TestSpeculativeFailure(t *testing.T) {
	st := State{
		Options: Options{Strategy: Speculative, Min: 1, Max: 4, Revert: true},
		Queue:   commits("a", "b", "c", "d", "e"),
	}
	p := Next(st)
	if got := keys(p.Start); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Fatalf("first plan starts %v, want the window of four", got)
	}
	if p.Start[2].Ahead != 2 {
		t.Errorf("c planned behind %d undecided commits, want 2", p.Start[2].Ahead)
	}
	st.Apply(p)

	// b fails before a finishes: its verdict waits for a's, but the
	// candidates behind it that hold b are cancelled and restarted without it.
	st.Observe(Result{Run: p.Start[1], Verdict: Failed})
	p = Next(st)
	if len(p.Verdicts) != 0 || len(p.Revert) != 0 {
		t.Fatalf("b judged before a: %+v", p)
	}
	if got := keys(p.Cancel); !slices.Equal(got, []string{"c", "d"}) {
		t.Errorf("cancelled %v, want c and d", got)
	}
	if got := keys(p.Start); !slices.Equal(got, []string{"c -b", "d -b"}) {
		t.Errorf("started %v, want c and d without b", got)
	}
	st.Apply(p)

	// a passes: a and b are decided, b's revert is asked, the window halves.
	st.Observe(Result{Run: Run{Key: "a", Commit: "a", Batch: []string{"a"}}, Verdict: Passed})
	p = Next(st)
	want := []Decision{
		{Commit: "a", Verdict: Passed, Judgement: Judgement{How: Alone}, Run: "a"},
		{Commit: "b", Verdict: Failed, Judgement: Judgement{How: Speculatively, Ahead: 1}, Run: "b"},
	}
	if fmt.Sprint(p.Verdicts) != fmt.Sprint(want) {
		t.Errorf("verdicts %+v, want %+v", p.Verdicts, want)
	}
	if !slices.Equal(p.Revert, []string{"b"}) || p.FastForward != "a" {
		t.Errorf("revert %v, fast-forward %q; want b reverted and the target at a", p.Revert, p.FastForward)
	}
	if p.Window != 2 {
		t.Errorf("window %d after a pass and a failure from 4, want (4+1)/2 = 2", p.Window)
	}
	if len(p.Start) != 0 || len(p.Cancel) != 0 {
		t.Errorf("c without b is running and in the window: start %v cancel %v", keys(p.Start), keys(p.Cancel))
	}
	if got := p.Verdicts[1].Judgement.String(); got != "speculatively, behind 1 commit not yet judged" {
		t.Errorf("judgement %q", got)
	}
}

func TestErrorIsRetriedNeverReverted(t *testing.T) {
	for _, o := range strategies {
		t.Run(o.String(), func(t *testing.T) {
			o.Revert = true
			st := State{Options: o, Queue: commits("a", "b")}
			p := Next(st)
			st.Apply(p)
			first := p.Start[0]
			st.Observe(Result{Run: first, Verdict: Error})
			p = Next(st)
			if len(p.Verdicts) != 0 || len(p.Revert) != 0 || p.FastForward != "" || p.Done {
				t.Fatalf("an error decided something: %+v", p)
			}
			i := slices.IndexFunc(p.Start, func(r Run) bool { return r.Key == first.Key })
			if i < 0 {
				t.Fatalf("%s not started again after an error: %v", first.Key, keys(p.Start))
			}
			if p.Start[i].Attempt != 2 {
				t.Errorf("attempt %d, want 2", p.Start[i].Attempt)
			}
		})
	}
}

func TestCancelledRunReportsNothing(t *testing.T) {
	st := State{Options: Options{Strategy: Speculative, Max: 2, Revert: true}, Queue: commits("a", "b")}
	p := Next(st)
	st.Apply(p)
	b := p.Start[1]
	st.Observe(Result{Run: p.Start[0], Verdict: Failed})
	p = Next(st)
	if got := keys(p.Cancel); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("cancelled %v, want b (it holds the failed a)", got)
	}
	st.Apply(p)
	// The cancelled test ends while it is torn down: that says nothing.
	st.Observe(Result{Run: b, Verdict: Error})
	st.Observe(Result{Run: b, Verdict: Passed})
	if st.Errors[b.Key] != 0 || len(st.Results) != 1 {
		t.Errorf("a cancelled run's result was kept: errors %v results %v", st.Errors, st.Results)
	}
}

func TestBatchBisects(t *testing.T) {
	st := State{Options: Options{Strategy: Batch, Batch: 8, Revert: true}, Queue: commits("a", "b", "c", "d", "e", "f", "g", "h", "i")}
	var tested []string
	fails := brokenSet("f")
	w := &world{source: st.Queue, fails: fails}
	for range 20 {
		p := Next(st)
		st.Apply(p)
		if p.Done || len(p.Revert) > 0 {
			break
		}
		if len(p.Start) != 1 {
			t.Fatalf("batch starts %v, want one run", keys(p.Start))
		}
		r := p.Start[0]
		tested = append(tested, fmt.Sprintf("%s(%d)", r.Key, len(r.Batch)))
		v, _ := w.verdict(r.Commit, r.Excluded)
		st.Observe(Result{Run: r, Verdict: v})
	}
	// h holds a..h and fails; d (a..d) passes; f (e, f) fails; e passes:
	// f is the culprit.
	want := []string{"h(8)", "d(4)", "f(2)", "e(1)"}
	if !slices.Equal(tested, want) {
		t.Errorf("tested %v, want %v", tested, want)
	}
	if st.Verdicts["d"] != Passed || st.Verdicts["e"] != Passed || st.Verdicts["f"] != Failed || st.Target != "e" {
		t.Errorf("verdicts %v target %q", st.Verdicts, st.Target)
	}
}

func keys(rs []Run) []string {
	var ks []string
	for _, r := range rs {
		ks = append(ks, r.Key)
	}
	return ks
}
