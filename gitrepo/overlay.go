package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// OverlayConflictError names the files a preview's changes and the target
// branch both changed, differently: Sluice does not guess which one wins.
type OverlayConflictError struct {
	// Paths are the conflicting paths, sorted.
	Paths []string
}

func (e *OverlayConflictError) Error() string {
	return "changed both by the preview and on the target branch since their common base: " + strings.Join(e.Paths, ", ")
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *OverlayConflictError) Is(target error) bool { return target == ErrConflict }

// MergeBase returns a best common ancestor of commits a and b, as
// `git merge-base` does; both must be in the local store (fetched).
func (r *Repository) MergeBase(ctx context.Context, a, b plumbing.Hash) (plumbing.Hash, error) {
	if err := r.mu.Lock(ctx); err != nil {
		return plumbing.ZeroHash, err
	}
	defer r.mu.Unlock()
	ca, err := object.GetCommit(r.st, a)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("commit %s: %w", short(a), err)
	}
	cb, err := object.GetCommit(r.st, b)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("commit %s: %w", short(b), err)
	}
	bases, err := ca.MergeBase(cb)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("merge base of %s and %s: %w", short(a), short(b), err)
	}
	if len(bases) == 0 {
		return plumbing.ZeroHash, fmt.Errorf("%s and %s have no common ancestor", short(a), short(b))
	}
	return bases[0].Hash, nil
}

// Overlay applies the changes from tree base to tree theirs onto tree
// onto, file by file, and writes the result to the local store: a file
// theirs changed is taken from theirs where onto still has base's version
// (or already theirs); a file onto changed differently is an
// *OverlayConflictError naming it, never merged line by line. It is how a
// preview puts a branch's changes on top of what a gate tested.
func (r *Repository) Overlay(ctx context.Context, base, theirs, onto plumbing.Hash) (plumbing.Hash, error) {
	if err := r.mu.Lock(ctx); err != nil {
		return plumbing.ZeroHash, err
	}
	defer r.mu.Unlock()
	tree := func(h plumbing.Hash) (*object.Tree, error) {
		if h.IsZero() {
			return nil, nil
		}
		t, err := object.GetTree(r.st, h)
		if err != nil {
			return nil, fmt.Errorf("tree %s: %w", short(h), err)
		}
		return t, nil
	}
	tb, err := tree(base)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	tt, err := tree(theirs)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	to, err := tree(onto)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	changes, err := r.diffTrees(ctx, tb, tt, nil)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	var updates []update
	var conflicts []string
	for _, ch := range changes {
		p := path.Join(append(slices.Clone(ch.dir), ch.name)...)
		var o []object.TreeEntry
		if to != nil {
			o, err = findEntries(r.st, to, ch.dir, ch.name)
			if errors.Is(err, object.ErrMalformedTree) {
				conflicts = append(conflicts, p) // the target's tree on the way does not parse
				continue
			}
			if err != nil {
				return plumbing.ZeroHash, err
			}
		}
		switch {
		case sameEntries(o, ch.from): // the target kept base's: take theirs
			updates = append(updates, update{dir: ch.dir, name: ch.name, entries: ch.to})
		case sameEntries(o, ch.to): // already as theirs
		default:
			conflicts = append(conflicts, p)
		}
	}
	if len(conflicts) > 0 {
		slices.Sort(conflicts)
		return plumbing.ZeroHash, &OverlayConflictError{Paths: conflicts}
	}
	h, blocked, err := r.applyUpdates(onto, updates)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if len(blocked) > 0 {
		return plumbing.ZeroHash, &OverlayConflictError{Paths: blocked}
	}
	return h, nil
}

// File is one file of a working tree: its content (a symlink's target for
// a symlink) and whether it is executable or a symlink.
type File struct {
	Data       []byte
	Executable bool
	Symlink    bool
}

// ReplaceDir writes a copy of tree whose directory dir (slash-separated,
// relative to the root) holds exactly files (paths relative to dir), and
// returns its hash. No files removes the directory.
func (r *Repository) ReplaceDir(ctx context.Context, tree plumbing.Hash, dir string, files map[string]File) (plumbing.Hash, error) {
	if err := r.mu.Lock(ctx); err != nil {
		return plumbing.ZeroHash, err
	}
	defer r.mu.Unlock()
	var ups []update
	for _, p := range sortedKeys(files) {
		f := files[p]
		parts := strings.Split(p, "/")
		for _, part := range parts {
			if !walkable(part) {
				return plumbing.ZeroHash, fmt.Errorf("%s: not a file name a tree can hold", path.Join(dir, p))
			}
		}
		h, err := writeBlob(r.st, f.Data)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		mode := filemode.Regular
		switch {
		case f.Symlink:
			mode = filemode.Symlink
		case f.Executable:
			mode = filemode.Executable
		}
		name := parts[len(parts)-1]
		ups = append(ups, update{dir: parts[:len(parts)-1], name: name, entries: []object.TreeEntry{{Name: name, Mode: mode, Hash: h}}})
	}
	sub, _, err := r.applyUpdates(plumbing.ZeroHash, ups)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	parts := strings.Split(strings.Trim(dir, "/"), "/")
	name := parts[len(parts)-1]
	u := update{dir: parts[:len(parts)-1], name: name}
	if len(files) > 0 {
		u.entries = []object.TreeEntry{{Name: name, Mode: filemode.Dir, Hash: sub}}
	}
	h, blocked, err := r.applyUpdates(tree, []update{u})
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if len(blocked) > 0 {
		return plumbing.ZeroHash, fmt.Errorf("%s: a parent is not a directory in the tree", dir)
	}
	return h, nil
}

// Branches lists the remote's branches whose names match the path.Match
// glob pattern (a "*" does not cross a "/"), with their tips.
func (r *Repository) Branches(ctx context.Context, pattern string) (map[string]plumbing.Hash, error) {
	if _, err := path.Match(pattern, ""); err != nil {
		return nil, fmt.Errorf("branch pattern %q: %w", pattern, err)
	}
	// ls-remote talks to the remote: no lock.
	refs, err := r.list(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]plumbing.Hash{}
	for name, h := range refs {
		if !name.IsBranch() {
			continue
		}
		b := name.Short()
		if ok, _ := path.Match(pattern, b); ok {
			out[b] = h
		}
	}
	return out, nil
}
