package plan

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// randomQueue makes a queue of up to 60 commits with documentation commits,
// a person's reverts and a deterministic test of one of three kinds.
func randomQueue(rng *rand.Rand) (w *world, kind string, monotone bool) {
	w = &world{docs: map[string]bool{}}
	n := rng.IntN(61)
	var originals []string
	reverted := map[string]bool{}
	for i := range n {
		id := fmt.Sprintf("c%d", i)
		if len(originals) > 0 && rng.IntN(20) == 0 {
			x := originals[rng.IntN(len(originals))]
			if !reverted[x] {
				reverted[x] = true
				w.source = append(w.source, Commit{ID: "P" + id, Reverts: x})
				continue
			}
		}
		if rng.IntN(7) == 0 {
			w.docs[id] = true
		}
		w.source = append(w.source, Commit{ID: id})
		originals = append(originals, id)
	}
	pick := func() string {
		if len(originals) == 0 {
			return "none"
		}
		return originals[rng.IntN(len(originals))]
	}
	switch rng.IntN(3) {
	case 0:
		var broken []string
		p := rng.Float64() / 2
		for _, c := range originals {
			if rng.Float64() < p {
				broken = append(broken, c)
			}
		}
		return w.with(brokenSet(broken...)), fmt.Sprintf("broken %v", broken), true
	case 1:
		var pairs [][2]string
		for range 1 + rng.IntN(4) {
			pairs = append(pairs, [2]string{pick(), pick()})
		}
		return w.with(together(pairs...)), fmt.Sprintf("failing together %v", pairs), true
	default:
		var pairs [][2]string
		for range 1 + rng.IntN(3) {
			pairs = append(pairs, [2]string{pick(), pick()})
		}
		return w.with(repaired(pairs...)), fmt.Sprintf("broken unless repaired %v", pairs), false
	}
}

func (w *world) with(f func(map[string]bool) bool) *world { w.fails = f; return w }

func randomOptions(rng *rand.Rand, monotone bool) Options {
	o := Options{Revert: rng.IntN(6) != 0}
	switch k := rng.IntN(3); {
	case k == 0:
		o.Strategy = Serial
	case k == 1 || !monotone:
		o.Strategy, o.Min = Speculative, 1+rng.IntN(3)
		o.Max = o.Min + rng.IntN(8)
	default:
		o.Strategy, o.Batch = Batch, 1+rng.IntN(10)
	}
	return o
}

// TestSameVerdictsAsSerial drains thousands of random queues with random
// strategies, windows, batch sizes, completion orders, error results and
// crashes (at any point of carrying out a plan), some starting from the
// state a crash of one-at-a-time gating left, and compares the verdicts,
// the reverts and the target's values with one-at-a-time gating's.
func TestSameVerdictsAsSerial(t *testing.T) {
	cases := 3000
	if testing.Short() {
		cases = 300
	}
	var commits, crashes, cancels, errors, judged int
	byHow := map[How]int{}
	defer func() {
		t.Logf("%d queues, %d commits: %d crashes, %d runs cancelled, %d error results, %d verdicts decided %v",
			cases, commits, crashes, cancels, errors, judged, byHow)
	}()
	for seed := range cases {
		rng := rand.New(rand.NewPCG(uint64(seed), 9))
		w, kind, monotone := randomQueue(rng)
		o := randomOptions(rng, monotone)
		start := newDurable()
		if rng.IntN(4) == 0 {
			// A crash of one-at-a-time gating after some events; the
			// source then holds the reverts it pushed.
			start = serial(w, start, o.Revert, 1+rng.IntN(2*len(w.source)+1))
		}
		want := serial(w.clone(), start.clone(), o.Revert, 0)
		s := sim{opts: o, rng: rng, errorRate: 0.1, crashRate: 0.02}
		name := fmt.Sprintf("seed %d: %d commits, %s, %v, revert %v", seed, len(w.source), kind, o, o.Revert)
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			got := s.run(t, w.clone(), start.clone())
			if t.Failed() {
				t.Log(name)
				return
			}
			sameAsSerial(t, want, got)
			commits += len(w.source)
			crashes, cancels, errors, judged = crashes+got.crashes, cancels+got.cancels, errors+got.errors, judged+len(got.judged)
			for _, j := range got.judged {
				byHow[j.How]++
			}
			if t.Failed() {
				t.Log(name)
			}
		})
		if t.Failed() {
			return
		}
	}
}

// TestMakespan measures, in test durations, how long a queue of 50 commits
// takes to drain when every test takes the same time, averaged over 20
// placements of the broken commits. The targets: with 2 broken,
// speculative at most 0.25× one-at-a-time; with 15 broken, at most 1.1×.
func TestMakespan(t *testing.T) {
	type row struct {
		broken       int
		serial, spec float64
		batch        float64
	}
	var rows []row
	for _, broken := range []int{0, 2, 15} {
		r := row{broken: broken}
		const seeds = 20
		for seed := range seeds {
			rng := rand.New(rand.NewPCG(uint64(seed), 50))
			w := &world{docs: map[string]bool{}, source: nil}
			for i := range 50 {
				w.source = append(w.source, Commit{ID: fmt.Sprintf("c%d", i)})
			}
			var bs []string
			for _, i := range rng.Perm(50)[:broken] {
				bs = append(bs, fmt.Sprintf("c%d", i))
			}
			w.fails = brokenSet(bs...)
			want := serial(w.clone(), newDurable(), true, 0)
			for _, o := range []Options{
				{Strategy: Serial, Revert: true},
				{Strategy: Speculative, Min: 1, Max: 8, Revert: true},
				{Strategy: Batch, Batch: 8, Revert: true},
			} {
				got := sim{opts: o}.run(t, w.clone(), newDurable())
				sameAsSerial(t, want, got)
				m := float64(got.makespan) / seeds
				switch o.Strategy {
				case Serial:
					r.serial += m
				case Speculative:
					r.spec += m
				default:
					r.batch += m
				}
			}
		}
		rows = append(rows, r)
	}
	t.Logf("makespan of 50 commits in test durations (mean of 20 placements of the broken ones)")
	t.Logf("%-8s %8s %18s %18s", "broken", "serial", "speculative ≤8", "batch of 8")
	for _, r := range rows {
		t.Logf("%-8d %8.1f %10.1f (%.2f×) %10.1f (%.2f×)", r.broken, r.serial, r.spec, r.spec/r.serial, r.batch, r.batch/r.serial)
		switch {
		case r.broken == 2 && r.spec > 0.25*r.serial:
			t.Errorf("2 of 50 broken: speculative takes %.2f× one-at-a-time, want ≤ 0.25×", r.spec/r.serial)
		case r.broken == 15 && r.spec > 1.1*r.serial:
			t.Errorf("15 of 50 broken: speculative takes %.2f× one-at-a-time, want ≤ 1.1×", r.spec/r.serial)
		}
	}
}
