package gitrepo

import (
	"context"
	"fmt"
	"slices"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// maxComparedEntries bounds the tree entries ChangedPaths looks at: far
// more than a commit that is worth comparing changes, far less than a
// render of the whole tree would cost to read.
const maxComparedEntries = 100_000

// ChangedPaths returns the paths whose entry differs between trees a and b,
// sorted: an entry added or removed, or whose mode (file, executable,
// symlink, directory, submodule) or object (a file's content, a symlink's
// target, a submodule's commit) differs. A directory that is added or
// removed, or that replaces or is replaced by something else, is itself a
// changed path, and so is everything under it; a directory present in both
// is not, only what changed under it. Directories with the same hash are
// not read, so the work is proportional to what changed, and bounded: more
// than 100,000 entries to compare is an error (render instead). Submodules
// are not entered. ZeroHash stands for the empty tree.
//
// Every tree read is checked as TreeFS checks it: a tree git fsck would
// refuse or warn about is a *TreeError, since its names cannot be compared
// with what a render read.
//
// Paths are relative to the root, slash-separated, and compared byte for
// byte, as git does. The repository lock is taken for each object read,
// not for the whole comparison.
func (r *Repository) ChangedPaths(ctx context.Context, a, b plumbing.Hash) ([]string, error) {
	d := &pathDiff{ctx: ctx, r: r, budget: maxComparedEntries}
	if err := d.trees(".", a, b); err != nil {
		return nil, fmt.Errorf("compare trees %s and %s: %w", short(a), short(b), err)
	}
	slices.Sort(d.out)
	return d.out, nil
}

// pathDiff is one ChangedPaths comparison.
type pathDiff struct {
	ctx    context.Context
	r      *Repository
	budget int // entries left to look at
	out    []string
}

// trees adds what differs between trees a and b found at p.
func (d *pathDiff) trees(p string, a, b plumbing.Hash) error {
	if a == b {
		return nil
	}
	ea, err := d.entries(a, p)
	if err != nil {
		return err
	}
	eb, err := d.entries(b, p)
	if err != nil {
		return err
	}
	names := make([]string, 0, max(len(ea), len(eb)))
	for n := range ea {
		names = append(names, n)
	}
	for n := range eb {
		if _, ok := ea[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		x, inA := ea[n]
		y, inB := eb[n]
		q := childPath(p, n)
		switch {
		case inA && inB && x.Mode == y.Mode && x.Hash == y.Hash:
			continue
		case inA && inB && x.Mode == filemode.Dir && y.Mode == filemode.Dir:
			if err := d.trees(q, x.Hash, y.Hash); err != nil {
				return err
			}
			continue
		}
		d.out = append(d.out, q)
		for _, e := range []struct {
			in bool
			e  object.TreeEntry
		}{{inA, x}, {inB, y}} {
			if e.in && e.e.Mode == filemode.Dir {
				if err := d.all(q, e.e.Hash); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// all adds every path under tree h, found at p.
func (d *pathDiff) all(p string, h plumbing.Hash) error {
	es, err := d.entries(h, p)
	if err != nil {
		return err
	}
	for n, e := range es {
		q := childPath(p, n)
		d.out = append(d.out, q)
		if e.Mode == filemode.Dir {
			if err := d.all(q, e.Hash); err != nil {
				return err
			}
		}
	}
	return nil
}

// entries reads and checks tree h, found at p, charging its entries to the
// budget. ZeroHash is the empty tree.
func (d *pathDiff) entries(h plumbing.Hash, p string) (map[string]object.TreeEntry, error) {
	if err := d.ctx.Err(); err != nil {
		return nil, err
	}
	if h.IsZero() {
		return nil, nil
	}
	t, err := d.r.checkedTree(d.ctx, h, p)
	if err != nil {
		return nil, err
	}
	if d.budget -= len(t.Entries); d.budget < 0 {
		return nil, fmt.Errorf("more than %d tree entries to compare", maxComparedEntries)
	}
	m := make(map[string]object.TreeEntry, len(t.Entries))
	for _, e := range t.Entries {
		m[e.Name] = e
	}
	return m, nil
}

// checkedTree reads tree h, found at p, under the repository lock, and
// checks it as TreeFS does.
func (r *Repository) checkedTree(ctx context.Context, h plumbing.Hash, p string) (*object.Tree, error) {
	if err := r.mu.Lock(ctx); err != nil {
		return nil, err
	}
	obj, err := r.st.EncodedObject(plumbing.TreeObject, h)
	var t *object.Tree
	if err == nil {
		t, err = object.DecodeTree(r.st, obj)
		if err != nil {
			err = &TreeError{Path: p, Reason: fmt.Sprintf("tree object %s does not parse: %v", short(h), err)}
		}
	}
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if _, err := checkTree(t, p); err != nil {
		return nil, err
	}
	return t, nil
}

func childPath(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name // names are checked: no slash, no . or ..
}
