package plan

import (
	"fmt"
	"slices"
	"strings"
)

// Verdict is the outcome of a candidate's test, and of a commit.
type Verdict string

const (
	// Passed: the candidate is good.
	Passed Verdict = "passed"
	// Failed: the commit's fault; it stays out of later candidates and is
	// reverted when Options.Revert is set.
	Failed Verdict = "failed"
	// Error: the infrastructure's fault; the run is started again.
	Error Verdict = "error"
)

// Strategy is how a gate tests its queue.
type Strategy string

const (
	Serial      Strategy = "serial"
	Speculative Strategy = "speculative"
	Batch       Strategy = "batch"
)

// Options are the gate's settings the planner needs.
type Options struct {
	Strategy Strategy
	// Min and Max bound the speculative window (gates[].parallelism); both
	// are at least 1.
	Min, Max int
	// Batch is the most commits one batch tests (at least 1).
	Batch int
	// Revert asks for a revert commit of each failed commit. Without it a
	// failed commit stays out of every later candidate until someone
	// reverts it, and the target cannot move past it.
	Revert bool
}

// Commit is a queued commit as the planner needs it.
type Commit struct {
	ID string
	// Reverts is the commit this one reverts, when it is a recognised
	// revert (Sluice's own, or git's exact message whose tree undoes it).
	Reverts string
	// Ours marks a revert Sluice wrote for this gate: it is the evidence
	// that the commit it reverts failed, even when the note never got written.
	Ours bool
}

// Run is one candidate to test: tree(Commit) with Excluded reverted out.
type Run struct {
	// Key names the candidate; equal keys are equal candidates.
	Key      string
	Commit   string
	Excluded []string // pending commits, oldest first; revert them newest first
	// Batch lists the commits a pass of this run decides, oldest first:
	// Commit alone, or for a batch Commit and the queued commits before it.
	Batch []string
	// Ahead counts the commits before Commit that had no verdict when the
	// run was planned: they are assumed to pass (speculation).
	Ahead int
	// Attempt is 1, plus one per earlier error result of this candidate;
	// the runner backs off before attempts after the first.
	Attempt int
}

// Result is a finished run.
type Result struct {
	Run     Run
	Verdict Verdict
	// Reused: the runner found the verdict without testing, because the
	// candidate renders the same objects as one already tested.
	Reused bool
}

// Key names the candidate tree(commit) without excluded.
func Key(commit string, excluded []string) string {
	if len(excluded) == 0 {
		return commit
	}
	return commit + " -" + strings.Join(excluded, " -")
}

// State is everything the planner reads. The runner builds it from Git
// (Target, Queue, Verdicts) and keeps it up to date with Apply and Observe.
type State struct {
	Options Options
	// Target is the target branch's tip; Queue is the first-parent commits
	// of the source after it, oldest first.
	Target string
	Queue  []Commit
	// Verdicts are the final verdicts known, by commit: the notes, and the
	// decisions of earlier plans. Anything but Passed and Failed is ignored.
	Verdicts map[string]Verdict
	// Results are finished runs, by run key (Observe).
	Results map[string]Result
	// Errors counts error results by run key (Observe).
	Errors map[string]int
	// Running are the runs started and not finished or cancelled.
	Running []Run
	// Window is the speculative window; 0 means Options.Max.
	Window int
}

// Apply updates s with what the runner did for p: runs cancelled and
// started, verdicts recorded, the target moved (the queue then starts after
// it) and the window. Revert commits are added by the runner itself.
func (s *State) Apply(p Plan) {
	cancelled := map[string]bool{}
	for _, r := range p.Cancel {
		cancelled[r.Key] = true
	}
	s.Running = slices.DeleteFunc(s.Running, func(r Run) bool { return cancelled[r.Key] })
	s.Running = append(s.Running, p.Start...)
	if s.Verdicts == nil {
		s.Verdicts = map[string]Verdict{}
	}
	for _, d := range p.Verdicts {
		s.Verdicts[d.Commit] = d.Verdict
	}
	s.Window = p.Window
	if p.FastForward != "" {
		if i := s.index(p.FastForward); i >= 0 {
			s.Queue = slices.Clone(s.Queue[i+1:])
			s.Target = p.FastForward
			queued := map[string]bool{}
			for _, c := range s.Queue {
				queued[c.ID] = true
			}
			for k, r := range s.Results {
				if !queued[r.Run.Commit] {
					delete(s.Results, k)
				}
			}
		}
	}
}

// Observe records a finished run. A result of a run that is not running
// (cancelled, or started before a crash) is ignored: a cancelled test may
// end in any way while it is torn down.
func (s *State) Observe(r Result) {
	n := len(s.Running)
	s.Running = slices.DeleteFunc(s.Running, func(x Run) bool { return x.Key == r.Run.Key })
	if len(s.Running) == n {
		return
	}
	switch r.Verdict {
	case Passed, Failed:
		if s.Results == nil {
			s.Results = map[string]Result{}
		}
		s.Results[r.Run.Key] = r
	default:
		if s.Errors == nil {
			s.Errors = map[string]int{}
		}
		s.Errors[r.Run.Key]++
	}
}

func (s *State) index(id string) int {
	return slices.IndexFunc(s.Queue, func(c Commit) bool { return c.ID == id })
}

func (o Options) normalized() Options {
	o.Min, o.Max, o.Batch = max(o.Min, 1), max(o.Max, 1), max(o.Batch, 1)
	if o.Strategy != Speculative && o.Strategy != Batch {
		o.Strategy = Serial
	}
	if o.Strategy != Speculative {
		o.Min, o.Max = 1, 1
	}
	o.Min = min(o.Min, o.Max)
	return o
}

// How says how a commit's verdict was reached.
type How string

const (
	Alone         How = "alone"
	Speculatively How = "speculatively"
	InBatch       How = "in a batch"
	ByRevert      How = "by its revert"
)

// Judgement is how a commit was judged, for its note.
type Judgement struct {
	How   How
	Ahead int // Speculatively: commits before it not yet judged
	Batch int // InBatch: commits the deciding run held
	// Reused: no test ran; the candidate renders the same objects as one
	// already tested.
	Reused bool
}

func (j Judgement) String() string {
	var s string
	switch j.How {
	case Speculatively:
		s = fmt.Sprintf("speculatively, behind %d %s not yet judged", j.Ahead, plural(j.Ahead, "commit"))
	case InBatch:
		s = fmt.Sprintf("in a batch of %d", j.Batch)
	case ByRevert:
		return "by the revert commit Sluice pushed for it"
	default:
		s = "alone"
	}
	if j.Reused {
		s += ", without a test (it renders the same objects as a tested candidate)"
	}
	return s
}

// Decision is a verdict decided by a plan, to be recorded.
type Decision struct {
	Commit    string
	Verdict   Verdict
	Judgement Judgement
	// Run is the key of the run whose result decided it ("" for ByRevert);
	// the runner takes the candidate, digest and reason from that run.
	Run string
}

// Plan is what the runner does next, in the order of the fields.
type Plan struct {
	// Cancel lists running runs whose candidate is stale (it holds a commit
	// now known or assumed to fail, or lacks one) or out of the window.
	Cancel []Run
	// Revert lists failed commits to revert, oldest first, each on top of
	// the source tip; the runner then appends the revert to State.Queue. A
	// revert is asked again by every plan until it is in the queue.
	Revert []string
	// Verdicts are new verdicts, in queue order.
	Verdicts []Decision
	// FastForward is the commit to move the target to, or "".
	FastForward string
	// Start lists runs to start.
	Start []Run
	// Window is the speculative window after this plan's verdicts.
	Window int
	// Done: every queued commit has a verdict and nothing is left to push;
	// the drain is over (after this plan is carried out).
	Done bool
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
