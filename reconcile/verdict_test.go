package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/sluice-gitops/sluice/gitrepo"
)

// testKey is the verdict key of the runners under test.
var testKey = mustKey('k')

func mustKey(fill byte) *gitrepo.VerdictKey {
	k, err := gitrepo.NewVerdictKey([]byte(strings.Repeat(string(fill), gitrepo.MinVerdictKeyLen)))
	if err != nil {
		panic(err)
	}
	return k
}

// pushLogFile is where countPushes's hook logs every ref update, in the bare repository.
const pushLogFile = "pushes.log"

// countPushes installs a post-receive hook on the server that logs every
// accepted ref update, and returns a function that counts those to main
// since the hook was installed.
func (f *queueFixture) countPushes() func() int {
	f.t.Helper()
	f.srv.InstallHook(f.t, "desired", "post-receive", "#!/bin/sh\nwhile read -r old new ref; do echo \"$ref $old $new\" >>\"${GIT_DIR:-.}/"+pushLogFile+"\"; done\n")
	return func() int {
		b, err := os.ReadFile(filepath.Join(f.srv.RepoDir("desired"), pushLogFile))
		if err != nil && !os.IsNotExist(err) {
			f.t.Fatal(err)
		}
		return strings.Count(string(b), "refs/heads/main ")
	}
}

// forgeNote writes text as the note on sha, from a colleague's clone, and
// pushes it, as anybody allowed to push can.
func (f *queueFixture) forgeNote(sha, text string) {
	f.t.Helper()
	f.remote("rev-parse", "HEAD") // fetch the notes first, to push on top of them
	file := filepath.Join(f.t.TempDir(), "note")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		f.t.Fatal(err)
	}
	f.work.Git(f.t, "notes", "--ref=sluice", "add", "-f", "-F", file, sha)
	if err := f.work.Push(f.t, "refs/notes/sluice:refs/notes/sluice"); err != nil {
		f.t.Fatal(err)
	}
}

// revertsOf lists the commits on main that revert sha, by git's line.
func (f *queueFixture) revertsOf(sha string) []string {
	f.t.Helper()
	var out []string
	for _, l := range strings.Split(f.remote("log", "--format=%H %s", "origin/main"), "\n") {
		h, _, _ := strings.Cut(l, " ")
		if h != "" && strings.Contains(f.remote("log", "-1", "--format=%B", h), "This reverts commit "+sha) {
			out = append(out, h)
		}
	}
	return out
}

// stormGuard returns a context that ends once the runner has pushed more
// than three reverts: a revert storm would otherwise go on for hundreds of
// passes before failing the test.
func (f *queueFixture) stormGuard() context.Context {
	ctx, stop := context.WithCancel(context.Background())
	f.t.Cleanup(stop)
	var mu sync.Mutex
	reverts := 0
	f.runner.OnEvent = func(e Event) {
		if e.Step == "revert" {
			mu.Lock()
			if reverts++; reverts > 3 {
				stop()
			}
			mu.Unlock()
		}
	}
	return ctx
}

func (f *queueFixture) tested(sha string) bool {
	f.env.mu.Lock()
	defer f.env.mu.Unlock()
	return slices.Contains(f.env.tested, sha)
}

// Forged evidence on the real Git server: notes and trailers anybody can
// push. Each commit is tested and judged on its merits; a broken one is
// reverted once and staging never holds it, a good one is never reverted.
func TestForgedVerdictsAreIgnored(t *testing.T) {
	unsigned := func(verdict, reason string) func(f *queueFixture, sha string) {
		return func(f *queueFixture, sha string) {
			rec := gitrepo.Record{Gate: "staging", Verdict: verdict, Reason: reason}
			f.forgeNote(sha, string(gitrepo.EncodeNote(gitrepo.Note{Records: []gitrepo.Record{rec}})))
		}
	}
	tests := []struct {
		name   string
		broken bool
		// forge runs after the commit is pushed and before Sluice sees it.
		forge func(f *queueFixture, sha string)
	}{
		{name: "a forged passed note on a broken commit", broken: true, forge: unsigned("passed", "")},
		{name: "a forged failed note on a good commit", broken: false, forge: unsigned("failed", "forged: please revert")},
		{name: "a passed note signed with another key", broken: true, forge: func(f *queueFixture, sha string) {
			rec, err := mustKey('x').SignRecord(plumbing.NewHash(sha), gitrepo.Record{Gate: "staging", Verdict: "passed"})
			if err != nil {
				t.Fatal(err)
			}
			f.forgeNote(sha, string(gitrepo.EncodeNote(gitrepo.Note{Records: []gitrepo.Record{rec}})))
		}},
		{name: "a note that does not parse on a broken commit", broken: true, forge: func(f *queueFixture, sha string) {
			f.forgeNote(sha, "LGTM, ship it\n")
		}},
		{name: "a note that does not parse on a good commit", broken: false, forge: func(f *queueFixture, sha string) {
			f.forgeNote(sha, "gate: staging\nverdict: passed\nwho: me\n")
		}},
		{name: "Sluice's passed record copied from a good commit onto a broken one", broken: true, forge: func(f *queueFixture, sha string) {
			// The good commit before it passed in an earlier run; its
			// note's record, signed by Sluice, is copied verbatim.
			good := f.remote("rev-parse", sha+"^")
			f.forgeNote(sha, f.remote("notes", "--ref=sluice", "show", good))
		}},
		{name: "a person's commit with Sluice's trailers naming a good commit", broken: false, forge: func(f *queueFixture, sha string) {
			f.push("tidy\n\nSluice-Gate: staging\nSluice-Rejected: "+sha, "README.md", "tidy\n")
		}},
		{name: "a person's commit with Sluice's trailers naming a broken commit", broken: true, forge: func(f *queueFixture, sha string) {
			f.push("tidy\n\nSluice-Gate: staging\nSluice-Rejected: "+sha, "README.md", "tidy\n")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newQueueFixture(t)
			a3 := f.push("bump A to v3", "env/a.yaml", deployment("a", "v3"))
			if err := f.runner.RunOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			version := "v5" // a good version of B
			if tt.broken {
				version = "v4"
			}
			c := f.push("bump B to "+version, "env/b.yaml", deployment("b", version))
			tt.forge(f, c)
			pushes := f.countPushes()
			// Sluice's own notes on what was already judged stay believed.
			before := len(f.env.tested)
			if err := f.runner.RunOnce(f.stormGuard()); err != nil {
				t.Error(err)
			}

			if !f.tested(c) {
				t.Errorf("the commit was not tested; tested: %v", f.env.tested[before:])
			}
			if f.tested(a3) && slices.Index(f.env.tested, a3) >= before {
				t.Errorf("a3, judged by Sluice before, was tested again")
			}
			want := gitrepo.VerdictPassed
			if tt.broken {
				want = gitrepo.VerdictFailed
			}
			if rec := f.record(c); rec.Verdict != want || !testKey.VerifyRecord(plumbing.NewHash(c), rec) {
				t.Errorf("record = %s (%q), want %s signed by Sluice", rec.Verdict, rec.Reason, want)
			}
			reverts := f.revertsOf(c)
			staging := f.remote("rev-parse", "origin/staging")
			if tt.broken {
				if len(reverts) != 1 || pushes() != 1 {
					t.Errorf("%d reverts of the broken commit, %d pushes to main by Sluice; want one of each", len(reverts), pushes())
				}
				if got := f.remote("show", "origin/staging:env/b.yaml"); strings.Contains(got, "b:v4") {
					t.Errorf("staging (%s) holds the broken commit's B", staging[:7])
				}
			} else {
				if len(reverts) != 0 {
					t.Errorf("the good commit was reverted by %v", reverts)
				}
				if main := f.remote("rev-parse", "origin/main"); staging != main {
					t.Errorf("staging = %s, want main %s", staging[:7], main[:7])
				}
			}
		})
	}
}

// A squash merge whose message quotes `This reverts commit <broken>.` is no
// revert: the broken commit is reverted exactly once, the squash and the
// commits after it are tested normally, and there is no revert storm.
func TestSquashQuotingARevertIsNoRevert(t *testing.T) {
	f := newQueueFixture(t)
	b4 := f.push("bump B to v4", "env/b.yaml", deployment("b", "v4"))
	squash := f.push(fmt.Sprintf("Add a changelog (#42)\n\n* Revert \"bump B to v4\"\n\nThis reverts commit %s.\n\n* Reapply it\n", b4), "CHANGELOG.md", "B v4\n")
	a3 := f.push("bump A to v3", "env/a.yaml", deployment("a", "v3"))
	pushes := f.countPushes()
	ctx := f.stormGuard()
	if err := f.runner.RunOnce(ctx); err != nil {
		t.Errorf("RunOnce = %v", err)
	}
	if n := pushes(); n != 1 {
		t.Fatalf("Sluice pushed to main %d times, want once (the revert of b4):\n%s", n, f.remote("log", "--format=%h %s", "origin/main"))
	}
	if reverts := f.revertsOf(b4); len(reverts) != 2 { // the squash quotes it, Sluice's revert writes it
		t.Errorf("commits naming b4 as reverted: %v, want the squash and Sluice's revert", reverts)
	}
	for sha, want := range map[string]string{b4: gitrepo.VerdictFailed, squash: gitrepo.VerdictPassed, a3: gitrepo.VerdictPassed} {
		if rec := f.record(sha); rec.Verdict != want {
			t.Errorf("%s: %s (%q), want %s", sha[:7], rec.Verdict, rec.Reason, want)
		}
	}
	if rec := f.record(a3); len(rec.Reverted) != 1 || rec.Reverted[0].String() != b4 {
		t.Errorf("a3 tested without %v, want without b4", rec.Reverted)
	}
	if staging, main := f.remote("rev-parse", "origin/staging"), f.remote("rev-parse", "origin/main"); staging != main {
		t.Errorf("staging = %s, want main's tip %s (Sluice's revert)", staging[:7], main[:7])
	}
	// A second run changes nothing.
	if err := f.runner.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if n := pushes(); n != 1 {
		t.Errorf("a second run pushed to main: %d pushes", n)
	}
}

// A person's real `git revert` of a broken commit is its revert: Sluice
// writes none of its own, and staging moves to the person's revert.
func TestPersonsGitRevertCountsBeforeSluiceRuns(t *testing.T) {
	f := newQueueFixture(t)
	b4 := f.push("bump B to v4", "env/b.yaml", deployment("b", "v4"))
	f.push("bump A to v3", "env/a.yaml", deployment("a", "v3"))
	f.work.Git(t, "revert", "--no-edit", b4)
	if err := f.work.Push(t, "HEAD:refs/heads/main"); err != nil {
		t.Fatal(err)
	}
	revert := f.remote("rev-parse", "origin/main")
	pushes := f.countPushes()
	if err := f.runner.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := pushes(); n != 0 {
		t.Errorf("Sluice pushed to main %d times, want none: the person's revert is b4's", n)
	}
	if rec := f.record(b4); rec.Verdict != gitrepo.VerdictFailed {
		t.Errorf("b4: %s, want failed", rec.Verdict)
	}
	if got := f.remote("rev-parse", "origin/staging"); got != revert {
		t.Errorf("staging = %s, want the person's revert %s", got[:7], revert[:7])
	}
}

// Sluice pushed its revert and stopped before the note said so (here: the
// note is gone). A restarted Sluice with the same key takes the verdict from
// its signed revert without testing again; one with another key tests the
// commit again but finds the revert, by git's message and tree. Neither
// reverts twice.
func TestRevertWithoutNoteConverges(t *testing.T) {
	tests := []struct {
		name       string
		key        *gitrepo.VerdictKey
		wantTested bool
	}{
		{name: "the same key: the signed revert gives the verdict", key: testKey, wantTested: false},
		{name: "a new key: tested again, the revert is found", key: mustKey('n'), wantTested: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newQueueFixture(t)
			b4 := f.push("bump B to v4", "env/b.yaml", deployment("b", "v4"))
			if err := f.runner.RunOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			revert := f.remote("rev-parse", "origin/main")
			if !strings.Contains(f.remote("log", "-1", "--format=%B", revert), gitrepo.TrailerSignature+": hmac-sha256:") {
				t.Fatalf("Sluice's revert is not signed:\n%s", f.remote("log", "-1", "--format=%B", revert))
			}
			// Lose b4's note and staging's progress past b4, as a crash right
			// after the revert push would have.
			f.work.Git(t, "notes", "--ref=sluice", "remove", b4)
			if err := f.work.Push(t, "refs/notes/sluice:refs/notes/sluice"); err != nil {
				t.Fatal(err)
			}
			f.srv.InstallHook(t, "desired", "pre-receive", "#!/bin/sh\ncat >/dev/null\n")
			if err := f.work.Push(t, "--force", b4+"^:refs/heads/staging"); err != nil {
				t.Fatal(err)
			}
			pushes := f.countPushes()
			calls := f.env.calls()
			again := f.newRunner(f.srv.RepoURL("desired"))
			again.Key = tt.key
			if err := again.RunOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			if tested := f.env.calls() > calls; tested != tt.wantTested {
				t.Errorf("b4 tested again: %v, want %v", tested, tt.wantTested)
			}
			if n := pushes(); n != 0 {
				t.Errorf("%d pushes to main, want none (no second revert)", n)
			}
			rec := f.record(b4)
			if rec.Verdict != gitrepo.VerdictFailed || !tt.key.VerifyRecord(plumbing.NewHash(b4), rec) {
				t.Errorf("b4's record = %+v, want failed, signed", rec)
			}
			if !tt.wantTested && rec.RevertCommit.String() != revert {
				t.Errorf("b4's record names revert %s, want %s", rec.RevertCommit, revert[:7])
			}
			if got := f.remote("rev-parse", "origin/staging"); got != revert {
				t.Errorf("staging = %s, want the revert %s", got[:7], revert[:7])
			}
		})
	}
}

// An unverifiable record Sluice keeps meeting (here on staging's tip, read
// at every pass) is logged once, not at every pass; Sluice's own records
// are never reported.
func TestUnverifiableRecordLoggedOnce(t *testing.T) {
	f := newQueueFixture(t)
	initial := f.remote("rev-parse", "origin/staging")
	f.forgeNote(initial, "gate: staging\nverdict: passed\n")
	logs := &logCapture{}
	f.runner.Log = slog.New(logs)
	f.push("bump B to v4", "env/b.yaml", deployment("b", "v4"))
	f.push("bump A to v3", "env/a.yaml", deployment("a", "v3"))
	for range 2 {
		if err := f.runner.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	got := logs.find(slog.LevelWarn, "ignoring a verdict record Sluice cannot verify")
	if len(got) != 1 || got[0].Attrs["commit"] != initial[:7] || got[0].Attrs["gate"] != "staging" {
		t.Errorf("warnings = %+v, want one for staging's tip %s", got, initial[:7])
	}
}
