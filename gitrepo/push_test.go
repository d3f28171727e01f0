package gitrepo

import (
	"errors"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/sluice-gitops/sluice/test/gitserver"
)

// pushFixture is a remote with main at c1 and a Repository that fetched it.
type pushFixture struct {
	bare string
	git  *cli // on the bare repository
	r    *Repository
	c1   plumbing.Hash
	tree plumbing.Hash
}

func newPushFixture(t *testing.T) *pushFixture {
	t.Helper()
	bare, w := newRemote(t)
	c1 := plumbing.NewHash(w.commitFiles(t, "c1", files{"a": "1\n"}))
	w.git(t, "push", "--quiet", "origin", "main")
	r := fetched(t, bare)
	c, err := r.Commit(t.Context(), c1)
	if err != nil {
		t.Fatal(err)
	}
	return &pushFixture{bare: bare, git: newCLI(t, bare), r: r, c1: c1, tree: c.Tree}
}

func (f *pushFixture) remoteMain(t *testing.T) string {
	t.Helper()
	return f.git.git(t, "rev-parse", "refs/heads/main")
}

func TestPushFastForward(t *testing.T) {
	f := newPushFixture(t)
	c2, err := f.r.CommitTree(t.Context(), f.tree, f.c1, "c2\n")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.r.Push(t.Context(), "main", f.c1, c2); err != nil {
		t.Fatal(err)
	}
	if got := f.remoteMain(t); got != c2.String() {
		t.Errorf("remote main = %s, want %s", got, c2)
	}
	if tip, err := f.r.Tip(t.Context(), "main"); err != nil || tip != c2 {
		t.Errorf("Tip(main) = %s, %v; want %s", tip, err, c2)
	}
	// Pushing the value the remote already has is a no-op.
	if err := f.r.Push(t.Context(), "main", c2, c2); err != nil {
		t.Errorf("Push(same) = %v", err)
	}
}

func TestPushIsCompareAndSwap(t *testing.T) {
	tests := []struct {
		name string
		// setup returns old and new for the push, possibly moving the remote.
		setup func(t *testing.T, f *pushFixture) (old, new plumbing.Hash)
	}{
		{
			name: "a wrong old value is refused",
			setup: func(t *testing.T, f *pushFixture) (plumbing.Hash, plumbing.Hash) {
				mid, _ := f.r.CommitTree(t.Context(), f.tree, f.c1, "never pushed\n")
				next, _ := f.r.CommitTree(t.Context(), f.tree, mid, "on top\n")
				return mid, next // remote is at c1, not mid
			},
		},
		{
			name: "a remote that moved since the fetch is refused",
			setup: func(t *testing.T, f *pushFixture) (plumbing.Hash, plumbing.Hash) {
				w := newCLI(t, t.TempDir())
				w.git(t, "clone", "--quiet", f.bare, ".")
				w.commitFiles(t, "someone else", files{"a": "other\n"})
				w.git(t, "push", "--quiet", "origin", "main")
				next, _ := f.r.CommitTree(t.Context(), f.tree, f.c1, "ours\n")
				return f.c1, next
			},
		},
		{
			name: "a non-fast-forward new value is refused, never forced",
			setup: func(t *testing.T, f *pushFixture) (plumbing.Hash, plumbing.Hash) {
				sibling, _ := f.r.CommitTree(t.Context(), f.tree, plumbing.ZeroHash, "unrelated root\n")
				return f.c1, sibling
			},
		},
		{
			name: "creating a branch that exists is refused",
			setup: func(t *testing.T, f *pushFixture) (plumbing.Hash, plumbing.Hash) {
				next, _ := f.r.CommitTree(t.Context(), f.tree, f.c1, "ours\n")
				return plumbing.ZeroHash, next
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newPushFixture(t)
			old, new := tt.setup(t, f)
			before := f.remoteMain(t)
			err := f.r.Push(t.Context(), "main", old, new)
			if !errors.Is(err, ErrStale) {
				t.Fatalf("Push() error = %v, want ErrStale", err)
			}
			if IsTransient(err) {
				t.Error("ErrStale reported as transient")
			}
			if after := f.remoteMain(t); after != before {
				t.Errorf("remote main moved from %s to %s", before, after)
			}
			if tip, _ := f.r.Tip(t.Context(), "main"); tip == new {
				t.Error("remote-tracking ref moved to the refused value")
			}
		})
	}
}

func TestPushCreatesBranch(t *testing.T) {
	f := newPushFixture(t)
	if err := f.r.Push(t.Context(), "staging", plumbing.ZeroHash, f.c1); err != nil {
		t.Fatal(err)
	}
	if got := f.git.git(t, "rev-parse", "refs/heads/staging"); got != f.c1.String() {
		t.Errorf("remote staging = %s, want %s", got, f.c1)
	}
}

// TestPushOverHTTP pushes through git's smart-HTTP backend, with branch
// protection that allows only fast-forwards, and a hook that refuses.
func TestPushOverHTTP(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{Username: "sluice", Password: "push-secret-1"})
	url := srv.CreateRepo(t, "desired")
	c1 := gitserver.Seed(t, srv, "desired", map[string]string{"a": "1\n"}, "c1")
	srv.InstallHook(t, "desired", "pre-receive", gitserver.ProtectBranches("main", "staging"))

	r, err := Open(t.Context(), Options{URL: url, Credentials: &Credentials{Username: "sluice", Password: "push-secret-1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Fetch(t.Context(), "main"); err != nil {
		t.Fatal(err)
	}
	tip, _ := r.Tip(t.Context(), "main")
	if tip.String() != c1 {
		t.Fatalf("Tip(main) = %s, want %s", tip, c1)
	}
	c, _ := r.Commit(t.Context(), tip)
	c2, _ := r.CommitTree(t.Context(), c.Tree, tip, "c2\n")
	if err := r.Push(t.Context(), "main", tip, c2); err != nil {
		t.Fatalf("fast-forward push through protection: %v", err)
	}
	if log := srv.ProtectLog(t, "desired"); log != nil {
		t.Errorf("protection refused something: %v", log)
	}

	// A hook that refuses everything: ErrRejected, not ErrStale.
	srv.InstallHook(t, "desired", "pre-receive", "#!/bin/sh\necho 'no pushes today' >&2\nexit 1\n")
	c3, _ := r.CommitTree(t.Context(), c.Tree, c2, "c3\n")
	err = r.Push(t.Context(), "main", c2, c3)
	if !errors.Is(err, ErrRejected) || errors.Is(err, ErrStale) {
		t.Fatalf("Push() refused by hook error = %v, want ErrRejected", err)
	}
	if tip, _ := r.Tip(t.Context(), "main"); tip != c2 {
		t.Errorf("Tip(main) = %s after a refused push, want %s", tip, c2)
	}
}
