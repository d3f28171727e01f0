package reconcile

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-gitops/sluice/reconcile/plan"
)

// pushLogHook is a post-receive hook that logs each push of the staging
// branch (with whether the notes on the server already hold a note on its
// new value) and of the notes, one line each, to log.
func pushLogHook(log string) string {
	return `#!/bin/sh
while read -r old new ref; do
	case "$ref" in
	refs/heads/staging)
		noted=unnoted
		if git notes --ref=sluice list "$new" >/dev/null 2>&1; then noted=noted; fi
		echo "staging $new $noted" >>` + shellWord(log) + `
		;;
	refs/notes/sluice) echo notes >>` + shellWord(log) + ` ;;
	esac
done
`
}

func shellWord(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestDrainPublishesOncePerSlowStep: what a pass decides is published
// (the notes pushed, then the target fast-forwarded to the furthest commit
// that passed) before a run renders or tests, and when the pass ends, not
// once per verdict: commits that render nothing new cost no push of their
// own. Every value the target takes already has its note on the server.
func TestDrainPublishesOncePerSlowStep(t *testing.T) {
	tests := []struct {
		name    string
		queue   []string // "docs" or "bump"
		staging []int    // indexes of the queue commits staging takes, in order
		notes   int      // pushes of the notes
	}{
		{"documentation only", []string{"docs", "docs", "docs", "docs", "docs"}, []int{4}, 1},
		{"documentation around a bump", []string{"docs", "docs", "docs", "bump", "docs", "docs"}, []int{2, 5}, 2},
		{"bumps", []string{"bump", "bump", "bump"}, []int{0, 1, 2}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newQueueFixture(t)
			log := filepath.Join(t.TempDir(), "pushes.log")
			f.srv.InstallHook(t, "desired", "post-receive", pushLogHook(log))
			var shas []string
			for i, kind := range tt.queue {
				if kind == "docs" {
					shas = append(shas, f.push(fmt.Sprintf("docs %d", i), "README.md", fmt.Sprintf("edit %d\n", i)))
				} else {
					shas = append(shas, f.push(fmt.Sprintf("bump %d", i), "env/a.yaml", deployment("a", fmt.Sprintf("v%d", 10+i))))
				}
			}
			if err := f.runner.RunOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			for i, sha := range shas {
				if rec := f.record(sha); Verdict(rec.Verdict) != Passed {
					t.Errorf("commit %d: %s, want passed", i, rec.Verdict)
				}
			}
			b, err := os.ReadFile(log)
			if err != nil {
				t.Fatal(err)
			}
			var staging []string
			notes := 0
			for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				f := strings.Fields(line)
				switch {
				case f[0] == "notes":
					notes++
				case f[0] == "staging" && f[2] != "noted":
					t.Errorf("staging moved to %s before its note was pushed", f[1][:7])
					fallthrough
				default:
					staging = append(staging, f[1])
				}
			}
			var want []string
			for _, i := range tt.staging {
				want = append(want, shas[i])
			}
			if fmt.Sprint(staging) != fmt.Sprint(want) || notes != tt.notes {
				t.Errorf("staging took %v and the notes were pushed %d times,\nwant %v and %d", staging, notes, want, tt.notes)
			}
		})
	}
}

// TestRevertGoesFirst: a failed commit's revert is pushed before any note
// of the verdicts decided with it is pushed (a restart finds the revert or
// nothing, never a failed note without its revert), and the revert and
// verdict events name the revert commit, the verdict told after the revert.
func TestRevertGoesFirst(t *testing.T) {
	for _, strategy := range []plan.Strategy{plan.Serial, plan.Speculative, plan.Batch} {
		t.Run(string(strategy), func(t *testing.T) {
			f := newQueueFixture(t)
			g := &f.runner.Gates[0]
			g.Strategy, g.ParallelismMin, g.ParallelismMax = strategy, 1, 4
			log := filepath.Join(t.TempDir(), "pushes.log")
			f.srv.InstallHook(t, "desired", "post-receive", `#!/bin/sh
while read -r old new ref; do
	case "$ref" in
	refs/heads/main) echo "main $new" >>`+shellWord(log)+` ;;
	refs/notes/sluice) echo "notes $(git notes --ref=sluice list | cut -d' ' -f2 | tr '\n' ' ')" >>`+shellWord(log)+` ;;
	esac
done
`)
			var (
				mu     sync.Mutex
				events []Event
			)
			f.runner.OnEvent = func(e Event) {
				mu.Lock()
				events = append(events, e)
				mu.Unlock()
			}
			f.push("bump A to v3", "env/a.yaml", deployment("a", "v3"))
			b4 := f.push("bump B to v4", "env/b.yaml", deployment("b", "v4"))
			f.push("bump A to v4", "env/a.yaml", deployment("a", "v4"))
			if err := f.runner.RunOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			revert := f.record(b4).RevertCommit
			if revert.IsZero() {
				t.Fatalf("b4's note names no revert")
			}
			b, err := os.ReadFile(log)
			if err != nil {
				t.Fatal(err)
			}
			pushed := false
			for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				pushed = pushed || line == "main "+revert.String()
				if strings.HasPrefix(line, "notes ") && strings.Contains(line, b4) && !pushed {
					t.Errorf("b4's note was pushed before its revert:\n%s", b)
				}
			}
			var told []string
			for _, e := range events {
				if e.Commit.Hash.String() != b4 || (e.Step != "revert" && e.Step != "verdict") {
					continue
				}
				told = append(told, e.Step)
				if e.Revert != revert {
					t.Errorf("b4's %s event names revert %s, want %s", e.Step, e.Revert, revert)
				}
			}
			if fmt.Sprint(told) != "[revert verdict]" {
				t.Errorf("b4's events: %v, want the revert, then the verdict", told)
			}
		})
	}
}
