package gitrepo

import (
	"errors"
	"io/fs"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/sluice-gitops/sluice/test/gitserver"
)

// TestFetchPull fetches pull requests' heads, as a forge serves them, from
// a real Git server into refs Sluice names itself.
func TestFetchPull(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	url := srv.CreateRepo(t, "desired")
	gitserver.Seed(t, srv, "desired", map[string]string{"a": "1\n"}, "c1")
	w := srv.Clone(t, "desired")
	w.Write(t, "a", "2\n")
	head1 := w.Commit(t, "the pull request")
	if err := w.Push(t, "HEAD:refs/pull/7/head", "HEAD:refs/merge-requests/3/head"); err != nil {
		t.Fatal(err)
	}
	r, err := Open(t.Context(), Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		from    string
		n       int64
		want    string
		wantErr string
	}{
		{name: "a GitHub or Gitea pull request's head", from: "refs/pull/7/head", n: 7, want: head1},
		{name: "a GitLab merge request's head", from: "refs/merge-requests/3/head", n: 3, want: head1},
		{name: "a pull request the remote does not have", from: "refs/pull/8/head", n: 8, wantErr: "branch not found"},
		{name: "a branch is not a pull request", from: "refs/heads/main", n: 7, wantErr: "is not a ref"},
		{name: "Sluice's own refs are not fetched over", from: "refs/sluice/remote-notes", n: 7, wantErr: "is not a ref"},
		{name: "a pattern is not a ref", from: "refs/pull/*/head", n: 7, wantErr: "is not a ref"},
		{name: "a refspec is not a ref", from: "refs/pull/7/head:refs/heads/main", n: 7, wantErr: "is not a ref"},
		{name: "a bad name is refused", from: "refs/pull/../head", n: 7, wantErr: "is not a ref"},
		{name: "no number", from: "refs/pull/0/head", n: 0, wantErr: "is not a ref"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.FetchPull(t.Context(), tt.from, tt.n, 0)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("FetchPull(%q) = %v, %v; want an error saying %q", tt.from, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tt.want {
				t.Errorf("FetchPull = %s, want %s", got, tt.want)
			}
			ref, err := r.st.Reference(PullRef(tt.n))
			if err != nil || ref.Hash() != got {
				t.Errorf("%s = %v (%v), want %s", PullRef(tt.n), ref, err, got)
			}
			if _, err := r.Commit(t.Context(), got); err != nil {
				t.Errorf("the head's commit is not in the store: %v", err)
			}
		})
	}

	// The pull request moves, and is fetched again, unchanged or not.
	w.Write(t, "a", "3\n")
	head2 := w.Commit(t, "more")
	if err := w.Push(t, "+HEAD:refs/pull/7/head"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		got, err := r.FetchPull(t.Context(), "refs/pull/7/head", 7, 0)
		if err != nil || got.String() != head2 {
			t.Fatalf("FetchPull after a push = %s, %v; want %s", got, err, head2)
		}
	}
	// Nothing but Sluice's pull refs was written.
	refs, err := r.st.IterReferences()
	if err != nil {
		t.Fatal(err)
	}
	_ = refs.ForEach(func(ref *plumbing.Reference) error {
		if n := ref.Name().String(); !strings.HasPrefix(n, "refs/sluice/pulls/") && n != "HEAD" {
			t.Errorf("FetchPull wrote %s", n)
		}
		return nil
	})
	if _, err := r.FetchPull(t.Context(), "refs/pull/8/head", 8, 0); !errors.Is(err, ErrBranchNotFound) {
		t.Errorf("a missing pull request: %v, want ErrBranchNotFound", err)
	}

	// Pull requests no longer open leave no ref behind; nothing else goes.
	var pulls []string
	_ = refsOf(t, r, func(n string) {
		if strings.HasPrefix(n, "refs/sluice/pulls/") {
			pulls = append(pulls, n)
		}
	})
	if len(pulls) < 2 {
		t.Fatalf("pull refs before pruning: %v, want at least two", pulls)
	}
	before := refsOf(t, r, func(string) {})
	removed, err := r.PrunePulls(t.Context(), []int64{7, 99})
	if err != nil || removed != len(pulls)-1 {
		t.Fatalf("PrunePulls = %d, %v; want %d removed", removed, err, len(pulls)-1)
	}
	after := refsOf(t, r, func(string) {})
	if after != before-removed {
		t.Errorf("refs after pruning: %d, want %d", after, before-removed)
	}
	if ref, err := r.st.Reference(PullRef(7)); err != nil || ref.Hash().String() != head2 {
		t.Errorf("the open pull request's ref after pruning: %v, %v", ref, err)
	}
}

// refsOf calls f with each ref's name and returns how many there are.
func refsOf(t *testing.T, r *Repository, f func(string)) int {
	t.Helper()
	it, err := r.st.IterReferences()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	_ = it.ForEach(func(ref *plumbing.Reference) error {
		n++
		f(ref.Name().String())
		return nil
	})
	return n
}

// TestFetchPullIsBounded: a pull request that brings more than the fetch's
// bound is stopped, into memory or into a cache directory, writes no ref,
// and says so with ErrFetchTooLarge; the same head under a larger bound is
// fetched.
func TestFetchPullIsBounded(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	url := srv.CreateRepo(t, "desired")
	gitserver.Seed(t, srv, "desired", map[string]string{"a": "1\n"}, "c1")
	w := srv.Clone(t, "desired")
	// 3 MiB that do not compress.
	big := make([]byte, 3<<20)
	rand.New(rand.NewSource(1)).Read(big)
	w.Write(t, "big.bin", string(big))
	head := w.Commit(t, "a large file")
	if err := w.Push(t, "HEAD:refs/pull/5/head"); err != nil {
		t.Fatal(err)
	}

	for _, store := range []struct {
		name string
		dir  string
	}{{"memory", ""}, {"cache directory", t.TempDir()}} {
		t.Run(store.name, func(t *testing.T) {
			r, err := Open(t.Context(), Options{URL: url, Dir: store.dir})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			_, err = r.FetchPull(t.Context(), "refs/pull/5/head", 5, 1<<20)
			if !errors.Is(err, ErrFetchTooLarge) || !strings.Contains(err.Error(), "refs/pull/5/head") || !strings.Contains(err.Error(), "1 MiB") {
				t.Fatalf("FetchPull under a 1 MiB bound: %v, want ErrFetchTooLarge naming the ref and the bound", err)
			}
			if ref, err := r.st.Reference(PullRef(5)); err == nil {
				t.Errorf("a refused fetch wrote %s = %s", PullRef(5), ref.Hash())
			}
			// Nothing of the refused pack stays on disk.
			leftovers(t, store.dir, "a refused fetch", func(name string) bool {
				return strings.HasPrefix(name, "tmp_") || strings.HasPrefix(name, "sluice-fetch-") || strings.HasSuffix(name, ".pack")
			})
			got, err := r.FetchPull(t.Context(), "refs/pull/5/head", 5, 8<<20)
			if err != nil || got.String() != head {
				t.Fatalf("FetchPull under an 8 MiB bound = %s, %v; want %s", got, err, head)
			}
			leftovers(t, store.dir, "a fetch within its bound", func(name string) bool {
				return strings.HasPrefix(name, "tmp_") || strings.HasPrefix(name, "sluice-fetch-")
			})
		})
	}
}

// leftovers fails t for each file under dir (none: in memory) that stray
// takes, left by what.
func leftovers(t *testing.T, dir, what string, stray func(name string) bool) {
	t.Helper()
	if dir == "" {
		return
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && stray(d.Name()) {
			t.Errorf("%s left %s", what, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
