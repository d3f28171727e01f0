package plan

import "slices"

// batchLook is what the batch strategy knows at the first undecided commit.
type batchLook struct {
	to     int    // the commits up to this queue index pass; -1: not known
	batch  int    // how many commits that pass decides
	key    string // the run whose result it is
	reused bool
	run    Run // when to < 0: the run to test next
}

// batchLook examines the batch that starts at queue index i: the commits
// from i that have no verdict, up to a revert commit (its tree lacks a
// change the commits before it hold, so passing it says nothing of them).
// Each one's candidate assumes the ones before it pass, so it holds them
// all. If the newest candidate with a pass is older than every candidate
// with a failure, everything up to it passes. Otherwise the run to start is
// the newest of up to k commits, or, under a known failure, the middle one
// (bisection: the first failing commit is between i and the failure).
func (s State) batchLook(i int, pending []string, k int, reverts map[string]Commit) batchLook {
	var region []Run
	for j := i; j < len(s.Queue); j++ {
		c := s.Queue[j]
		if j > i {
			if v := s.Verdicts[c.ID]; v == Passed || v == Failed || c.Reverts != "" {
				break
			}
			if r, ok := reverts[c.ID]; ok && r.Ours {
				break
			}
		}
		key := Key(c.ID, pending)
		region = append(region, Run{Key: key, Commit: c.ID, Excluded: slices.Clone(pending), Attempt: s.Errors[key] + 1})
	}
	failed := len(region)
	for j, r := range region {
		if res, ok := s.Results[r.Key]; ok && res.Verdict == Failed {
			failed = j
			break
		}
	}
	for j := failed - 1; j >= 0; j-- {
		if res, ok := s.Results[region[j].Key]; ok && res.Verdict == Passed {
			return batchLook{to: i + j, batch: j + 1, key: region[j].Key, reused: res.Reused}
		}
	}
	newest := min(k, len(region)) - 1
	if failed < len(region) {
		newest = failed / 2
	}
	r := region[newest]
	for _, b := range region[:newest+1] {
		r.Batch = append(r.Batch, b.Commit)
	}
	return batchLook{to: -1, run: r}
}
