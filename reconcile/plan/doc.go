// Package plan decides what a gate's queue does next: which candidates to
// test, which running tests to cancel, which failed commits to revert, which
// verdicts to record and where to fast-forward the target branch. It is a
// pure function of a [State]; it does no I/O, starts nothing, reads no clock
// and never logs. The runner (package reconcile) executes a [Plan] and tells
// the state what happened.
//
// # The runner's loop
//
//	st := plan.State{Options: opts, Target: tip, Queue: queue, Verdicts: fromNotes}
//	for {
//		p := plan.Next(st)
//		// 1. cancel p.Cancel (delete their namespaces);
//		// 2. push a revert of each commit in p.Revert, oldest first, on top of
//		//    the source tip, and append each revert to st.Queue (Commit.Ours);
//		// 3. record p.Verdicts in their order (the notes);
//		// 4. fast-forward the target to p.FastForward, if set;
//		// 5. start p.Start: build tree(Run.Commit) with Run.Excluded reverted
//		//    out (newest first), render it, test it;
//		st.Apply(p)
//		switch {
//		case p.Done:
//			return
//		case len(p.Revert) > 0:
//			continue // the reverts are new queued commits: plan again
//		}
//		st.Observe(<-results) // one Result per finished run, none for a cancelled one
//	}
//
// A crash anywhere in this loop is safe: a new State built from Git alone
// (target tip, queue, verdicts in the notes, Sluice's own revert commits)
// gives the same remaining decisions. Running tests are not part of what
// must survive.
//
// # What it decides
//
// A candidate for commit C is tree(C) with every pending commit reverted
// out: a commit is pending from its failed verdict until a commit in the
// queue reverts it. Verdicts are decided in queue order, each only when every
// commit before it has one, from a test of exactly the candidate that
// one-at-a-time gating would test; so the verdicts, the reverts (which and
// in which order) and the values the target takes (a subsequence of the
// one-at-a-time ones, ending at the same commit) are those of one-at-a-time
// gating, for tests whose outcome depends only on the candidate.
//
//   - [Serial] tests one candidate at a time: the queue as Sluice always
//     walked it.
//   - [Speculative] tests the next w undecided commits at once, each assuming
//     the undecided ones before it pass (or fail, if their own test already
//     said so). A failure makes the candidates behind it stale: they are
//     cancelled and started again without it. w grows by one per passed
//     verdict and halves per failed one, between Options.Min and Options.Max.
//   - [Batch] tests the newest of up to Options.Batch commits, whose tree
//     holds the others; a pass decides all of them, a failure bisects to the
//     first failing commit. This gives one-at-a-time's verdicts when a passing
//     candidate would also pass without its newest commits (no commit repairs
//     an earlier one of the same batch). A revert commit always starts a new
//     batch, since it removes a change the commits before it hold.
//
// Other facts come from the runner: a verdict already recorded in the notes
// is reused, a revert commit Sluice wrote (Commit.Ours) is the failed verdict
// of the commit it reverts, and a candidate that renders the same objects as
// one already tested is reported as a Result with Reused set, without a test.
// An error result (the infrastructure's fault) decides nothing: the run is
// started again, with Run.Attempt counting, and its commit is never reverted
// for it. The runner chooses the backoff.
package plan
