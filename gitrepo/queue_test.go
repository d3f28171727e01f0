package gitrepo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/google/go-cmp/cmp"
)

// subjects lists the queue's commit subjects.
func subjects(cs []Commit) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Subject)
	}
	return out
}

// queueRemote builds, with the git CLI:
//
//	main:    c1 - c2 ----------- M - c3
//	              \             /
//	feature:       f1 -------- f2
//
// and returns the remote and the hashes by name.
func queueRemote(t *testing.T) (string, *cli, map[string]string) {
	t.Helper()
	bare, w := newRemote(t)
	h := map[string]string{}
	h["c1"] = w.commitFiles(t, "c1", files{"a": "1\n"})
	h["c2"] = w.commitFiles(t, "c2", files{"a": "2\n"})
	w.git(t, "checkout", "--quiet", "-b", "feature")
	h["f1"] = w.commitFiles(t, "f1", files{"a": "2\n", "f": "1\n"})
	h["f2"] = w.commitFiles(t, "f2", files{"a": "2\n", "f": "2\n"})
	w.git(t, "checkout", "--quiet", "main")
	w.git(t, "merge", "--quiet", "--no-ff", "-m", "Merge pull request #1 from feature", "feature")
	h["M"] = w.git(t, "rev-parse", "HEAD")
	w.git(t, "commit", "--quiet", "--allow-empty", "-m", "c3: bump b\n\nSigned-off-by: Dev <dev@example.com>")
	h["c3"] = w.git(t, "rev-parse", "HEAD")
	w.git(t, "push", "--quiet", "origin", "main", "feature")
	return bare, w, h
}

func TestQueue(t *testing.T) {
	bare, w, h := queueRemote(t)
	tests := []struct {
		name    string
		staging string // where staging points
		want    []string
		wantErr error
	}{
		{name: "a merged pull request is one queued commit, in first-parent order", staging: "c1", want: []string{"c2", "Merge pull request #1 from feature", "c3: bump b"}},
		{name: "a target at the source tip gives an empty queue", staging: "c3", want: nil},
		{name: "a target reached only through a second parent excludes its whole history", staging: "f1", want: []string{"Merge pull request #1 from feature", "c3: bump b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w.git(t, "push", "--quiet", "--force", "origin", h[tt.staging]+":refs/heads/staging")
			r := openRemote(t, bare)
			if err := r.Fetch(t.Context(), "main", "staging"); err != nil {
				t.Fatal(err)
			}
			got, err := r.Queue(t.Context(), "main", "staging")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, subjects(got)); diff != "" {
				t.Errorf("Queue() subjects (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("queued commits carry parent, tree and trailers", func(t *testing.T) {
		w.git(t, "push", "--quiet", "--force", "origin", h["c1"]+":refs/heads/staging")
		r := openRemote(t, bare)
		if err := r.Fetch(t.Context(), "main", "staging"); err != nil {
			t.Fatal(err)
		}
		q, err := r.Queue(t.Context(), "main", "staging")
		if err != nil {
			t.Fatal(err)
		}
		m := q[1]
		if m.Hash.String() != h["M"] || m.Parent.String() != h["c2"] {
			t.Errorf("merge entry = %s with parent %s, want %s with first parent %s", m.Hash, m.Parent, h["M"], h["c2"])
		}
		if tree := w.git(t, "rev-parse", h["M"]+"^{tree}"); m.Tree.String() != tree {
			t.Errorf("merge tree = %s, want %s", m.Tree, tree)
		}
		if got := q[2].Trailers.Get("signed-off-by"); got != "Dev <dev@example.com>" {
			t.Errorf("c3 Signed-off-by = %q", got)
		}
		if q[2].Author.Email != "test@example.com" || q[2].When.IsZero() {
			t.Errorf("c3 author = %+v at %v", q[2].Author, q[2].When)
		}
	})
}

func TestQueueTargetDiverged(t *testing.T) {
	bare, w, h := queueRemote(t)
	w.git(t, "checkout", "--quiet", "-b", "staging", h["c2"])
	w.commitFiles(t, "hotfix straight on staging", files{"a": "hotfix\n"})
	w.git(t, "push", "--quiet", "origin", "staging")

	r := openRemote(t, bare)
	if err := r.Fetch(t.Context(), "main", "staging"); err != nil {
		t.Fatal(err)
	}
	_, err := r.Queue(t.Context(), "main", "staging")
	if !errors.Is(err, ErrNotAncestor) {
		t.Fatalf("Queue() error = %v, want ErrNotAncestor", err)
	}
	if IsTransient(err) {
		t.Error("ErrNotAncestor reported as transient")
	}
}

func TestQueueNeedsFetchedBranches(t *testing.T) {
	r := memRepo(t)
	if _, err := r.Queue(t.Context(), "main", "staging"); !errors.Is(err, ErrBranchNotFound) {
		t.Errorf("Queue() before Fetch error = %v, want ErrBranchNotFound", err)
	}
}

func TestIsAncestor(t *testing.T) {
	r := memRepo(t)
	a := mkCommit(t, r, plumbing.ZeroHash, "a", files{"f": "a\n"})
	b := mkCommit(t, r, a, "b", files{"f": "b\n"})
	c := mkCommit(t, r, a, "c", files{"f": "c\n"})
	tests := []struct {
		name string
		x, y plumbing.Hash
		want bool
	}{
		{"a commit is its own ancestor", a, a, true},
		{"a parent is an ancestor", a, b, true},
		{"a child is not an ancestor", b, a, false},
		{"siblings are not ancestors", b, c, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.IsAncestor(t.Context(), tt.x, tt.y)
			if err != nil || got != tt.want {
				t.Errorf("IsAncestor() = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestFetchMissingBranch(t *testing.T) {
	bare, _, h := queueRemote(t)
	r := openRemote(t, bare)
	err := r.Fetch(t.Context(), "main", "nope")
	if !errors.Is(err, ErrBranchNotFound) {
		t.Fatalf("Fetch(nope) error = %v, want ErrBranchNotFound", err)
	}
	if !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("error %q does not name the branch", err)
	}
	// The branches that exist were fetched anyway.
	tip, err := r.Tip(t.Context(), "main")
	if err != nil || tip.String() != h["c3"] {
		t.Errorf("Tip(main) = %s, %v; want %s", tip, err, h["c3"])
	}
	if _, err := r.Tip(t.Context(), "nope"); !errors.Is(err, ErrBranchNotFound) {
		t.Errorf("Tip(nope) error = %v, want ErrBranchNotFound", err)
	}
}

func TestFetchForgetsDeletedBranch(t *testing.T) {
	bare, w, _ := queueRemote(t)
	r := openRemote(t, bare)
	if err := r.Fetch(t.Context(), "feature"); err != nil {
		t.Fatal(err)
	}
	w.git(t, "push", "--quiet", "origin", "--delete", "feature")
	if err := r.Fetch(t.Context(), "feature"); !errors.Is(err, ErrBranchNotFound) {
		t.Fatalf("Fetch(deleted) error = %v, want ErrBranchNotFound", err)
	}
	if _, err := r.Tip(t.Context(), "feature"); !errors.Is(err, ErrBranchNotFound) {
		t.Errorf("Tip(deleted) error = %v, want ErrBranchNotFound", err)
	}
}

// openFetched opens a cache in dir of bare and fetches main into it.
func openFetched(t *testing.T, bare, dir string) *Repository {
	t.Helper()
	r, err := Open(t.Context(), Options{URL: bare, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Fetch(t.Context(), "main"); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestOpenOnDiskCacheIsReused(t *testing.T) {
	bare, _, h := queueRemote(t)
	dir := t.TempDir()
	r := openFetched(t, bare, dir)
	// While r holds the cache, nobody else may use it: go-git has no lock
	// of its own, and two writers would corrupt refs.
	if _, err := Open(t.Context(), Options{URL: bare, Dir: dir}); !errors.Is(err, ErrCacheInUse) || !strings.Contains(err.Error(), fmt.Sprintf("process %d", os.Getpid())) {
		t.Fatalf("Open of a cache in use error = %v, want ErrCacheInUse naming this process", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen: the cache keeps the fetched refs and objects.
	r2, err := Open(t.Context(), Options{URL: bare, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	tip, err := r2.Tip(t.Context(), "main")
	if err != nil || tip.String() != h["c3"] {
		t.Fatalf("Tip(main) after reopen = %s, %v; want %s", tip, err, h["c3"])
	}
	if _, err := r2.Commit(t.Context(), tip); err != nil {
		t.Errorf("Commit(tip) after reopen: %v", err)
	}
	r2.Close()
	// Reopen with another URL: the remote is repointed.
	other, _, _ := queueRemote(t)
	r3, err := Open(t.Context(), Options{URL: "file://" + other, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := r3.Fetch(t.Context(), "main"); err != nil {
		t.Fatal(err)
	}
}

// TestOpenRemovesStrays: what a process ended in the middle of a fetch
// left in the cache directory (a spool, go-git's temporary pack and object
// files) is removed by the next Open that takes the directory, and by no
// Open that cannot take it; nothing else is touched.
func TestOpenRemovesStrays(t *testing.T) {
	bare, _, h := queueRemote(t)
	dir := t.TempDir()
	r := openFetched(t, bare, dir)
	write := func(name string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	strays := []string{write("sluice-fetch-1234"), write("objects/pack/tmp_pack_5678"), write("objects/pack/tmp_obj_9")}
	kept := []string{write("objects/pack/notes.txt"), write("sluice-fetched"), filepath.Join(dir, "objects/pack/tmp_pack_dir")}
	if err := os.Mkdir(kept[2], 0o755); err != nil {
		t.Fatal(err)
	}
	exist := func(p string) bool { _, err := os.Lstat(p); return err == nil }

	// Another Open while r holds the directory removes nothing: r may be
	// writing them.
	if _, err := Open(t.Context(), Options{URL: bare, Dir: dir}); !errors.Is(err, ErrCacheInUse) {
		t.Fatalf("Open of a cache in use = %v, want ErrCacheInUse", err)
	}
	for _, p := range strays {
		if !exist(p) {
			t.Errorf("an Open that could not take the directory removed %s", p)
		}
	}
	r.Close()

	r2, err := Open(t.Context(), Options{URL: bare, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	for _, p := range strays {
		if exist(p) {
			t.Errorf("%s is still there after Open", p)
		}
	}
	for _, p := range kept {
		if !exist(p) {
			t.Errorf("Open removed %s, which no fetch writes", p)
		}
	}
	if tip, err := r2.Tip(t.Context(), "main"); err != nil || tip.String() != h["c3"] {
		t.Errorf("Tip(main) after Open = %s, %v; want %s", tip, err, h["c3"])
	}
}
