package gitrepo_test

import (
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/manifests"
)

// BenchmarkTreeFSRenderArticle renders the article's example from a tree
// object, as a gate does, to measure what TreeFS's checks and limits cost
// an ordinary render (compare manifests' BenchmarkRenderArticle, from disk).
func BenchmarkTreeFSRenderArticle(b *testing.B) {
	r, tree := commitDir(b, "../examples/article")
	opts := manifests.DefaultRenderOptions()
	for b.Loop() {
		fsys, err := r.TreeFS(b.Context(), tree, gitrepo.TreeOptions{MaxBlobSize: opts.MaxFileSize})
		if err != nil {
			b.Fatal(err)
		}
		objs, err := manifests.Render(context.Background(), fsys, "environments/staging", opts)
		if err != nil {
			b.Fatal(err)
		}
		if len(objs) != 10 {
			b.Fatalf("rendered %d objects, want 10", len(objs))
		}
	}
}

// commitDir commits the files under dir with the git CLI into a new
// repository, fetches it into a Repository and returns the commit's tree.
func commitDir(b *testing.B, dir string) (*gitrepo.Repository, plumbing.Hash) {
	b.Helper()
	work := b.TempDir()
	git := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-c", "user.name=T", "-c", "user.email=t@example.com", "-c", "commit.gpgSign=false"}, args...)...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q", "-b", "main", ".")
	if err := os.CopyFS(work, os.DirFS(dir)); err != nil {
		b.Fatal(err)
	}
	git("add", "-A")
	git("commit", "-q", "-m", "article")
	r, err := gitrepo.Open(context.Background(), gitrepo.Options{URL: "file://" + work})
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Fetch(context.Background(), "main"); err != nil {
		b.Fatal(err)
	}
	tip, err := r.Tip(b.Context(), "main")
	if err != nil {
		b.Fatal(err)
	}
	c, err := r.Commit(b.Context(), tip)
	if err != nil {
		b.Fatal(err)
	}
	return r, c.Tree
}
