package plan_test

import (
	"fmt"

	"github.com/sluice-gitops/sluice/reconcile/plan"
)

// A window of three over a queue of three; b is broken.
func ExampleNext() {
	st := plan.State{
		Options: plan.Options{Strategy: plan.Speculative, Min: 1, Max: 3, Revert: true},
		Queue:   []plan.Commit{{ID: "a"}, {ID: "b"}, {ID: "c"}},
	}
	show := func(p plan.Plan) {
		for _, r := range p.Cancel {
			fmt.Printf("cancel %q\n", r.Key)
		}
		for _, c := range p.Revert {
			fmt.Printf("revert %s\n", c)
		}
		for _, d := range p.Verdicts {
			fmt.Printf("%s %s %s\n", d.Commit, d.Verdict, d.Judgement)
		}
		if p.FastForward != "" {
			fmt.Printf("fast-forward to %s\n", p.FastForward)
		}
		for _, r := range p.Start {
			fmt.Printf("start %q\n", r.Key)
		}
	}
	p := plan.Next(st)
	show(p)
	st.Apply(p)
	st.Observe(plan.Result{Run: p.Start[1], Verdict: plan.Failed}) // b
	st.Observe(plan.Result{Run: p.Start[0], Verdict: plan.Passed}) // a
	fmt.Println("--")
	p = plan.Next(st)
	show(p)
	// Output:
	// start "a"
	// start "b"
	// start "c"
	// --
	// cancel "c"
	// revert b
	// a passed alone
	// b failed speculatively, behind 1 commit not yet judged
	// fast-forward to a
	// start "c -b"
}
