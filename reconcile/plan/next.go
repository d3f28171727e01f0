package plan

import "slices"

// Next is the plan for s: the verdicts that can be decided now, in queue
// order, the reverts and the fast-forward they lead to, and the runs that
// must be running (the others are cancelled). It does not modify s; calling
// it again on the same state gives the same plan.
func Next(s State) Plan {
	o := s.Options.normalized()
	w := s.Window
	if w <= 0 {
		w = o.Max
	}
	w = min(max(w, o.Min), o.Max)

	reverts := firstReverts(s.Queue)
	var (
		p         Plan
		pending   []string // failed (or assumed failed) and not reverted yet, oldest first
		certain   = true   // every commit walked so far has a verdict
		undecided int      // commits walked without a verdict
		want      []Run
		infer     batchLook // Batch: commits up to infer.to pass with the run that tested infer.to
	)
	infer.to = -1
walk:
	for i, c := range s.Queue {
		if c.Reverts != "" {
			pending = without(pending, c.Reverts)
		}
		key := Key(c.ID, pending)
		var (
			out    Verdict
			how    Judgement
			run    string
			known  bool
			tested bool // decided by a test, so it moves the window
		)
		rev, reverted := reverts[c.ID]
		switch {
		case s.Verdicts[c.ID] == Passed || s.Verdicts[c.ID] == Failed:
			out, known = s.Verdicts[c.ID], true
		case reverted && rev.Ours:
			out, how = Failed, Judgement{How: ByRevert}
		case i <= infer.to:
			out, how, run = Passed, Judgement{How: InBatch, Batch: infer.batch, Reused: infer.reused}, infer.key
		default:
			if res, ok := s.Results[key]; ok {
				out, how, run, tested = res.Verdict, judged(res), key, !res.Reused
				break
			}
			if o.Strategy != Batch || !certain {
				break
			}
			infer = s.batchLook(i, pending, o.Batch, reverts)
			if infer.to < 0 {
				want = append(want, infer.run)
				certain = false
				break walk
			}
			out, how, run = Passed, Judgement{How: InBatch, Batch: infer.batch, Reused: infer.reused}, infer.key
		}

		if out == "" {
			// Not known yet: assumed to pass by the commits behind it.
			certain = false
			if undecided < w {
				want = append(want, Run{
					Key:      key,
					Commit:   c.ID,
					Excluded: slices.Clone(pending),
					Batch:    []string{c.ID},
					Ahead:    undecided,
					Attempt:  s.Errors[key] + 1,
				})
			}
			undecided++
			continue
		}
		switch {
		case !certain:
			if !known {
				undecided++
			}
		case !known:
			p.Verdicts = append(p.Verdicts, Decision{Commit: c.ID, Verdict: out, Judgement: how, Run: run})
			if tested && o.Strategy == Speculative {
				if out == Passed {
					w = min(w+1, o.Max)
				} else {
					w = max(w/2, o.Min)
				}
			}
		}
		switch out {
		case Passed:
			if certain && len(pending) == 0 {
				p.FastForward = c.ID
			}
		case Failed:
			pending = append(pending, c.ID)
			if certain && o.Revert && !reverted {
				p.Revert = append(p.Revert, c.ID)
			}
		}
		if !certain && undecided >= w {
			break // nothing behind it may start
		}
	}

	wanted := map[string]bool{}
	for _, r := range want {
		wanted[r.Key] = true
	}
	running := map[string]bool{}
	for _, r := range s.Running {
		running[r.Key] = true
		if !wanted[r.Key] {
			p.Cancel = append(p.Cancel, r)
		}
	}
	for _, r := range want {
		if !running[r.Key] {
			p.Start = append(p.Start, r)
		}
	}
	p.Window = w
	p.Done = certain && len(p.Revert) == 0
	return p
}

// judged says how a run's result judged its commit.
func judged(r Result) Judgement {
	j := Judgement{How: Alone, Reused: r.Reused}
	switch {
	case r.Run.Ahead > 0:
		j.How, j.Ahead = Speculatively, r.Run.Ahead
	case len(r.Run.Batch) > 1:
		j.How, j.Batch = InBatch, len(r.Run.Batch)
	}
	return j
}

// firstReverts maps each reverted commit to the first queued commit that
// reverts it.
func firstReverts(q []Commit) map[string]Commit {
	m := map[string]Commit{}
	for _, c := range q {
		if c.Reverts == "" {
			continue
		}
		if _, dup := m[c.Reverts]; !dup {
			m[c.Reverts] = c
		}
	}
	return m
}

func without(s []string, id string) []string {
	if i := slices.Index(s, id); i >= 0 {
		return slices.Delete(slices.Clone(s), i, i+1)
	}
	return s
}
