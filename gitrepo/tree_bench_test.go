package gitrepo

import (
	"fmt"
	"io/fs"

	"github.com/go-git/go-git/v5/plumbing"
	"testing"
)

// BenchmarkTreeFSWideDirectory looks paths up in a directory of 100,000
// entries, as a render of a commit that adds one would: every lookup must
// not rescan the directory.
func BenchmarkTreeFSWideDirectory(b *testing.B) {
	const n = 100_000
	r := memRepo(b)
	fx := files{"environments/staging/kustomization.yaml": "resources: []\n"}
	for i := range n {
		fx[fmt.Sprintf("environments/staging/wide/f%06d.yaml", i)] = "x: 1\n"
	}
	tree := mkTree(b, r, fx)
	name := func(i int) string { return fmt.Sprintf("environments/staging/wide/f%06d.yaml", (i*7919)%n) }
	b.Run("lookups in one view", func(b *testing.B) {
		fsys := benchTreeFS(b, r, tree)
		for i := 0; b.Loop(); i++ {
			if _, err := fs.Stat(fsys, name(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("first lookup in a new view", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := fs.Stat(benchTreeFS(b, r, tree), name(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func benchTreeFS(b *testing.B, r *Repository, tree plumbing.Hash) fs.FS {
	b.Helper()
	fsys, err := r.TreeFS(b.Context(), tree, TreeOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return fsys
}
