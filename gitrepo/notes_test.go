package gitrepo

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-cmp/cmp"
)

func hash(c byte) plumbing.Hash { return plumbing.NewHash(strings.Repeat(string(c), 40)) }

var sampleNote = Note{Records: []Record{
	{
		Gate:      "prod",
		Verdict:   VerdictPassed,
		Candidate: hash('a'),
		Digest:    "sha256:0f1e",
		Skipped:   true,
		Started:   time.Date(2025, 3, 4, 5, 6, 7, 890, time.UTC),
	},
	{
		Gate:         "staging",
		Verdict:      VerdictFailed,
		Candidate:    hash('b'),
		Digest:       "sha256:abcd",
		Reverted:     []plumbing.Hash{hash('c'), hash('d')},
		Reason:       "health check timed out:\n  Deployment/b: 0/1 ready\n\n  events: ImagePullBackOff",
		RevertCommit: hash('e'),
		Started:      time.Date(2025, 3, 4, 5, 0, 0, 0, time.UTC),
		Durations:    map[string]time.Duration{"render": 120 * time.Millisecond, "apply": 2 * time.Second, "total": 2*time.Minute + 5*time.Second},
		Attempts:     2,
	},
}}

func TestEncodeNote(t *testing.T) {
	want := `gate: prod
verdict: passed
candidate: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
digest: sha256:0f1e
skipped: true
started: 2025-03-04T05:06:07.00000089Z

gate: staging
verdict: failed
candidate: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb
digest: sha256:abcd
reverted: cccccccccccccccccccccccccccccccccccccccc dddddddddddddddddddddddddddddddddddddddd
revert-commit: eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee
started: 2025-03-04T05:00:00Z
attempts: 2
durations: apply=2s render=120ms total=2m5s
reason:
    health check timed out:
      Deployment/b: 0/1 ready

      events: ImagePullBackOff
`
	// Records out of order and a non-UTC time encode the same.
	n := Note{Records: []Record{sampleNote.Records[1], sampleNote.Records[0]}}
	n.Records[0].Started = n.Records[0].Started.In(time.FixedZone("CET", 3600))
	if diff := cmp.Diff(want, string(EncodeNote(n))); diff != "" {
		t.Errorf("EncodeNote() (-want +got):\n%s", diff)
	}
}

func TestNoteRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		note Note
	}{
		{name: "an empty note", note: Note{}},
		{name: "two gates with every field", note: sampleNote},
		{name: "only gate and verdict", note: Note{Records: []Record{{Gate: "g", Verdict: VerdictError}}}},
		{name: "a reason starting with a blank line", note: Note{Records: []Record{{Gate: "g", Verdict: VerdictFailed, Reason: "\n\nafter two blank lines\n\n\nand three"}}}},
		{name: "a reason with indentation and a colon", note: Note{Records: []Record{{Gate: "g", Verdict: VerdictFailed, Reason: "key: value\n    indented: yes\ngate: not a block"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeNote(EncodeNote(tt.note))
			if err != nil {
				t.Fatalf("DecodeNote(EncodeNote()) error = %v\n%s", err, EncodeNote(tt.note))
			}
			if diff := cmp.Diff(tt.note, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeNoteErrors(t *testing.T) {
	const h = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	tests := []struct {
		name, in, wantLine string
	}{
		{"an unknown key", "gate: g\nverdict: passed\ncolour: red\n", "line 3"},
		{"a repeated key", "gate: g\nverdict: passed\nverdict: failed\n", "line 3"},
		{"an unknown verdict", "gate: g\nverdict: maybe\n", "line 2"},
		{"a missing verdict", "gate: g\ncandidate: " + h + "\n", "line 1"},
		{"a block not starting with gate", "verdict: passed\ngate: g\n", "line 1"},
		{"a short hash", "gate: g\nverdict: passed\ncandidate: abc\n", "line 3"},
		{"an uppercase hash", "gate: g\nverdict: passed\ncandidate: " + strings.ToUpper(h) + "\n", "line 3"},
		{"a non-canonical count", "gate: g\nverdict: passed\nattempts: 01\n", "line 3"},
		{"a negative count", "gate: g\nverdict: passed\nattempts: -1\n", "line 3"},
		{"a bad time", "gate: g\nverdict: passed\nstarted: yesterday\n", "line 3"},
		{"a bad duration", "gate: g\nverdict: passed\ndurations: render=fast\n", "line 3"},
		{"a repeated duration", "gate: g\nverdict: passed\ndurations: a=1s a=2s\n", "line 3"},
		{"a gate twice", "gate: g\nverdict: passed\n\ngate: g\nverdict: failed\n", "line 4"},
		{"a line without colon", "gate: g\nverdict passed\n", "line 2"},
		{"a value without space", "gate: g\nverdict:passed\n", "line 2"},
		{"an empty value", "gate: \nverdict: passed\n", "line 1"},
		{"a reason with no lines", "gate: g\nverdict: failed\nreason:\n\ngate: h\nverdict: passed\n", "line 3"},
		{"a reason on the key line", "gate: g\nverdict: failed\nreason: inline\n", "line 3"},
		{"a bad skipped", "gate: g\nverdict: passed\nskipped: yes\n", "line 3"},
		{"a control character", "gate: g\x01\nverdict: passed\n", "line 1"},
		{"CRLF line endings", "gate: g\r\nverdict: passed\r\n", "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeNote([]byte(tt.in))
			if err == nil {
				t.Fatalf("DecodeNote(%q) succeeded", tt.in)
			}
			if !strings.Contains(err.Error(), tt.wantLine+":") {
				t.Errorf("DecodeNote(%q) error = %q, want it to name %s", tt.in, err, tt.wantLine)
			}
		})
	}
}

func TestNoteSetAndGet(t *testing.T) {
	var n Note
	n.Set(Record{Gate: "staging", Verdict: VerdictFailed})
	n.Set(Record{Gate: "prod", Verdict: VerdictPassed})
	n.Set(Record{Gate: "staging", Verdict: VerdictPassed})
	if diff := cmp.Diff([]Record{{Gate: "prod", Verdict: VerdictPassed}, {Gate: "staging", Verdict: VerdictPassed}}, n.Records); diff != "" {
		t.Errorf("Set() (-want +got):\n%s", diff)
	}
	if r, ok := n.Get("staging"); !ok || r.Verdict != VerdictPassed {
		t.Errorf("Get(staging) = %+v, %v", r, ok)
	}
	if _, ok := n.Get("dev"); ok {
		t.Error("Get(dev) found a record")
	}
}

// notesRemote is a bare remote with two commits on main, fetched by a new Repository.
func notesRemote(t *testing.T) (bare string, w *cli, c1, c2 plumbing.Hash) {
	t.Helper()
	bare, w = newRemote(t)
	c1 = plumbing.NewHash(w.commitFiles(t, "c1", files{"a": "1\n"}))
	c2 = plumbing.NewHash(w.commitFiles(t, "c2", files{"a": "2\n"}))
	w.git(t, "push", "--quiet", "origin", "main")
	return bare, w, c1, c2
}

func fetched(t *testing.T, bare string) *Repository {
	t.Helper()
	r := openRemote(t, bare)
	if err := r.Fetch(t.Context(), "main"); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNotesAreReadableByGit(t *testing.T) {
	bare, _, c1, c2 := notesRemote(t)
	r := fetched(t, bare)
	if err := r.WriteNote(t.Context(), c1, sampleNote); err != nil {
		t.Fatal(err)
	}
	second := Note{Records: []Record{{Gate: "staging", Verdict: VerdictPassed, Candidate: hash('f')}}}
	if err := r.WriteNote(t.Context(), c2, second); err != nil {
		t.Fatal(err)
	}
	if err := r.PushNotes(t.Context()); err != nil {
		t.Fatal(err)
	}

	g := newCLI(t, bare)
	got := g.git(t, "notes", "--ref=sluice", "show", c1.String())
	if diff := cmp.Diff(strings.TrimSpace(string(EncodeNote(sampleNote))), got); diff != "" {
		t.Errorf("git notes show (-want +got):\n%s", diff)
	}
	log := g.git(t, "log", "--notes=sluice", "--format=%H%n%N", "main")
	if !strings.Contains(log, c2.String()+"\ngate: staging\nverdict: passed\n") {
		t.Errorf("git log --notes=sluice does not show the note on c2:\n%s", log)
	}
	// The notes history is linear: one commit per WriteNote.
	if n := g.git(t, "rev-list", "--count", "refs/notes/sluice"); n != "2" {
		t.Errorf("notes commits = %s, want 2", n)
	}

	// A fresh Repository reads them back.
	r2 := fetched(t, bare)
	n, ok, err := r2.ReadNote(t.Context(), c1)
	if err != nil || !ok {
		t.Fatalf("ReadNote(c1) = %v, %v", ok, err)
	}
	if diff := cmp.Diff(sampleNote, n); diff != "" {
		t.Errorf("ReadNote(c1) (-want +got):\n%s", diff)
	}
	if _, ok, err := r2.ReadNote(t.Context(), hash('9')); ok || err != nil {
		t.Errorf("ReadNote(unannotated) = %v, %v; want not found", ok, err)
	}
}

func TestReadNoteWrittenByGit(t *testing.T) {
	bare, w, c1, _ := notesRemote(t)
	w.git(t, "notes", "--ref=sluice", "add", "-m", "gate: prod\nverdict: failed\nreason:\n    it broke", c1.String())
	w.git(t, "push", "--quiet", "origin", "refs/notes/sluice")

	r := fetched(t, bare)
	n, ok, err := r.ReadNote(t.Context(), c1)
	if err != nil || !ok {
		t.Fatalf("ReadNote() = %v, %v", ok, err)
	}
	want := Note{Records: []Record{{Gate: "prod", Verdict: VerdictFailed, Reason: "it broke"}}}
	if diff := cmp.Diff(want, n); diff != "" {
		t.Errorf("ReadNote() (-want +got):\n%s", diff)
	}
}

func TestReadNoteNoNotesYet(t *testing.T) {
	bare, _, c1, _ := notesRemote(t)
	r := fetched(t, bare)
	if _, ok, err := r.ReadNote(t.Context(), c1); ok || err != nil {
		t.Errorf("ReadNote() = %v, %v; want not found", ok, err)
	}
	if err := r.PushNotes(t.Context()); err != nil {
		t.Errorf("PushNotes() with nothing to push: %v", err)
	}
}

func TestNotesFanout(t *testing.T) {
	r := memRepo(t)
	c := hash('a')
	r.mu.Lock(t.Context())
	blob, _ := writeBlob(r.st, []byte("gate: old\nverdict: passed\n"))
	key := c.String()
	tree, _, err := r.updateTree(plumbing.ZeroHash, map[string]*object.TreeEntry{
		key[:2] + "/" + key[2:]: {Mode: filemode.Regular, Hash: blob},
	})
	if err == nil {
		var commit plumbing.Hash
		if commit, err = r.commitTreeLocked(tree, plumbing.ZeroHash, "fanout\n", time.Now()); err == nil {
			err = r.setRef(NotesRef, commit)
		}
	}
	r.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}

	n, ok, err := r.ReadNote(t.Context(), c)
	if err != nil || !ok || n.Records[0].Gate != "old" {
		t.Fatalf("ReadNote(fan-out) = %+v, %v, %v", n, ok, err)
	}
	if err := r.WriteNote(t.Context(), c, Note{Records: []Record{{Gate: "new", Verdict: VerdictPassed}}}); err != nil {
		t.Fatal(err)
	}
	n, _, err = r.ReadNote(t.Context(), c)
	if err != nil || len(n.Records) != 1 || n.Records[0].Gate != "new" {
		t.Fatalf("ReadNote() after WriteNote = %+v, %v", n, err)
	}
	r.mu.Lock(t.Context())
	defer r.mu.Unlock()
	tip, _ := r.refHash(NotesRef)
	tree, _ = r.commitTreeOf(tip)
	paths, err := r.notePaths(tree, key, "")
	if err != nil || len(paths) != 1 || paths[0].path != key {
		t.Errorf("note paths after WriteNote = %+v, %v; want only the flat one", paths, err)
	}
}

func TestPushNotesMergesAnotherWriter(t *testing.T) {
	bare, _, c1, c2 := notesRemote(t)
	a := fetched(t, bare)
	b := fetched(t, bare)

	// Both start from the same notes.
	base := Note{Records: []Record{{Gate: "dev", Verdict: VerdictPassed}}}
	if err := a.WriteNote(t.Context(), c1, base); err != nil {
		t.Fatal(err)
	}
	if err := a.PushNotes(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := b.Fetch(t.Context(), "main"); err != nil {
		t.Fatal(err)
	}

	// A adds staging on c1 and pushes first.
	na, _, _ := a.ReadNote(t.Context(), c1)
	na.Set(Record{Gate: "staging", Verdict: VerdictPassed, Attempts: 1})
	if err := a.WriteNote(t.Context(), c1, na); err != nil {
		t.Fatal(err)
	}
	if err := a.PushNotes(t.Context()); err != nil {
		t.Fatal(err)
	}

	// B, not having seen that, adds prod on c1 and a note on c2.
	nb, _, _ := b.ReadNote(t.Context(), c1)
	nb.Set(Record{Gate: "prod", Verdict: VerdictFailed, Reason: "broken"})
	if err := b.WriteNote(t.Context(), c1, nb); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteNote(t.Context(), c2, Note{Records: []Record{{Gate: "prod", Verdict: VerdictPassed}}}); err != nil {
		t.Fatal(err)
	}
	if err := b.PushNotes(t.Context()); err != nil {
		t.Fatalf("PushNotes() after another writer: %v", err)
	}

	g := newCLI(t, bare)
	want := Note{Records: []Record{
		{Gate: "dev", Verdict: VerdictPassed},
		{Gate: "prod", Verdict: VerdictFailed, Reason: "broken"},
		{Gate: "staging", Verdict: VerdictPassed, Attempts: 1},
	}}
	if diff := cmp.Diff(strings.TrimSpace(string(EncodeNote(want))), g.git(t, "notes", "--ref=sluice", "show", c1.String())); diff != "" {
		t.Errorf("merged note on c1 (-want +got):\n%s", diff)
	}
	if got := g.git(t, "notes", "--ref=sluice", "show", c2.String()); got != "gate: prod\nverdict: passed" {
		t.Errorf("note on c2 = %q", got)
	}
	// Nothing was forced: A's notes commit is in the history of the result.
	a.mu.Lock(t.Context())
	aTip, _ := a.refHash(NotesRef)
	a.mu.Unlock()
	if _, err := g.try(t, "merge-base", "--is-ancestor", aTip.String(), "refs/notes/sluice"); err != nil {
		t.Errorf("A's notes commit is no longer in the remote's notes history: %v", err)
	}

	// A sees everything after a Fetch.
	if err := a.Fetch(t.Context(), "main"); err != nil {
		t.Fatal(err)
	}
	got, _, err := a.ReadNote(t.Context(), c1)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("A's view of c1 after Fetch (-want +got):\n%s", diff)
	}
}

func TestFetchKeepsUnpushedNotes(t *testing.T) {
	bare, _, c1, c2 := notesRemote(t)
	a := fetched(t, bare)
	b := fetched(t, bare)
	if err := a.WriteNote(t.Context(), c1, Note{Records: []Record{{Gate: "a", Verdict: VerdictPassed}}}); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteNote(t.Context(), c2, Note{Records: []Record{{Gate: "b", Verdict: VerdictPassed}}}); err != nil {
		t.Fatal(err)
	}
	if err := b.PushNotes(t.Context()); err != nil {
		t.Fatal(err)
	}
	// A fetches: it sees B's note and keeps its own unpushed one.
	if err := a.Fetch(t.Context(), "main"); err != nil {
		t.Fatal(err)
	}
	for c, gate := range map[plumbing.Hash]string{c1: "a", c2: "b"} {
		n, ok, err := a.ReadNote(t.Context(), c)
		if err != nil || !ok || n.Records[0].Gate != gate {
			t.Errorf("ReadNote(%s) = %+v, %v, %v; want gate %s", short(c), n, ok, err, gate)
		}
	}
	// And its push is now a plain fast-forward.
	if err := a.PushNotes(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := newCLI(t, bare).git(t, "notes", "--ref=sluice", "show", c1.String()); got != "gate: a\nverdict: passed" {
		t.Errorf("note on c1 = %q", got)
	}
}

func TestPushNotesConcurrentWriters(t *testing.T) {
	bare, w, _, _ := notesRemote(t)
	var commits []plumbing.Hash
	for i := range 3 {
		commits = append(commits, plumbing.NewHash(w.commitFiles(t, fmt.Sprintf("w%d", i), files{"a": fmt.Sprint(i)})))
	}
	w.git(t, "push", "--quiet", "origin", "main")

	const writers = 3 // each other writer can beat one at most once: within maxNotesPushAttempts
	repos := make([]*Repository, writers)
	for i := range repos {
		repos[i] = fetched(t, bare)
	}
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i, r := range repos {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gate := fmt.Sprintf("gate-%d", i)
			for _, c := range commits {
				n, _, err := r.ReadNote(t.Context(), c)
				if err != nil {
					errs[i] = err
					return
				}
				n.Set(Record{Gate: gate, Verdict: VerdictPassed})
				if err := r.WriteNote(t.Context(), c, n); err != nil {
					errs[i] = err
					return
				}
			}
			errs[i] = r.PushNotes(t.Context())
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	check := fetched(t, bare)
	for _, c := range commits {
		n, ok, err := check.ReadNote(t.Context(), c)
		if err != nil || !ok {
			t.Fatalf("ReadNote(%s) = %v, %v", short(c), ok, err)
		}
		var gates []string
		for _, rec := range n.Records {
			gates = append(gates, rec.Gate)
		}
		if diff := cmp.Diff([]string{"gate-0", "gate-1", "gate-2"}, gates); diff != "" {
			t.Errorf("gates on %s (-want +got):\n%s", short(c), diff)
		}
	}
}
