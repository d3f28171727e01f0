package reconcile

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
