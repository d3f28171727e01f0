package reconcile

import (
	"io/fs"
	"path"

	"github.com/sluice-gitops/sluice/manifests"
)

// sameRender reports whether a tree renders what an earlier tree rendered,
// knowing only what that render read (prev) and the paths the two trees
// differ at (changed, from gitrepo's ChangedPaths). It is true only when
// no changed path is at, above or below one of prev.Paths, nor at or above
// one of prev.Dirs (manifests.ReadSet says why). The caller must compare
// renders of the same gate path with the same options.
//
// It is conservative where it cannot be sure: an empty (unknown) read set,
// a changed path that is not a clean relative path ("", ".", "..", "a//b",
// "/a", "a/"), or a read set holding one, means "render again". Paths are
// compared byte for byte, as git and the tree reader compare names: on a
// tree read from Git, Kustomization.yaml and kustomization.yaml are two
// files.
func sameRender(prev manifests.ReadSet, changed []string) bool {
	if prev.Empty() {
		return false
	}
	// entries: a change below one of them counts. touched: every path a
	// change at which counts (the reads and all their directories).
	entries := make(map[string]bool, len(prev.Paths))
	touched := make(map[string]bool, 2*(len(prev.Paths)+len(prev.Dirs)))
	for _, list := range [][]string{prev.Paths, prev.Dirs} {
		for _, p := range list {
			if !fs.ValidPath(p) {
				return false
			}
			for q := p; !touched[q]; q = path.Dir(q) {
				touched[q] = true
			}
		}
	}
	for _, p := range prev.Paths {
		entries[p] = true
	}
	for _, c := range changed {
		if c == "." || !fs.ValidPath(c) || touched[c] {
			return false
		}
		for d := path.Dir(c); ; d = path.Dir(d) {
			if entries[d] {
				return false
			}
			if d == "." {
				break
			}
		}
	}
	return true
}
