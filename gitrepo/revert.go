package gitrepo

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// RevertOptions bound the line merge of one file in a revert. A zero field
// takes its default from DefaultRevertOptions.
type RevertOptions struct {
	// MaxFileBytes bounds each version of a file merged line by line,
	// checked from the object headers before any is read. Default 4 MiB.
	MaxFileBytes int64
	// MaxFileLines bounds each version's lines. The diff's worst case grows
	// with their square: 10,000 lines take about a second. Default 10,000.
	MaxFileLines int
}

// DefaultRevertOptions returns the limits Revert uses when none are given.
func DefaultRevertOptions() RevertOptions {
	return RevertOptions{MaxFileBytes: 4 << 20, MaxFileLines: 10_000}
}

func (o RevertOptions) withDefaults() RevertOptions {
	d := DefaultRevertOptions()
	if o.MaxFileBytes <= 0 {
		o.MaxFileBytes = d.MaxFileBytes
	}
	if o.MaxFileLines <= 0 {
		o.MaxFileLines = d.MaxFileLines
	}
	return o
}

// RevertLimitError is a revert that would need a line merge of a file past
// RevertOptions' limits. It is a conflict: errors.Is(err, ErrConflict) is
// true, and a person reverts the commit by hand.
type RevertLimitError struct {
	// Commit is the commit being reverted.
	Commit plumbing.Hash
	// Path is the file, Size and Limit its size and the limit it is over,
	// in Unit ("bytes" or "lines").
	Path        string
	Size, Limit int64
	Unit        string
}

func (e *RevertLimitError) Error() string {
	return fmt.Sprintf("revert %s: %s: too large to revert automatically (%d %s, limit %d)", short(e.Commit), e.Path, e.Size, e.Unit, e.Limit)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *RevertLimitError) Is(target error) bool { return target == ErrConflict }

// Revert computes the tree that results from reverting commit on top of the
// tree onto, as `git revert --no-commit` would in a work tree holding onto:
// a three-way merge with base tree(commit), ours onto, and theirs the tree of
// commit's first parent (empty for a root commit), for every path the commit
// changed. Text files merge line by line; changes separated by at least one
// unchanged line both survive, anything else conflicts. A file the commit
// added is deleted (conflict if onto changed it), a file it deleted is
// re-created (conflict if onto has something else there), a mode change is
// undone unless onto changed the mode too; binary files, symlinks and
// submodules conflict unless onto still has the commit's version. Renames
// are not detected: a file the commit changed that onto moved away
// conflicts. On conflict it returns a *ConflictError naming every
// conflicting path; it never guesses. The new tree is written to the
// local store.
//
// A file both sides changed is merged line by line only within
// Options.Revert's limits (RevertOptions): the diff's work grows with the
// square of the lines, under the repository's lock. Past them the path is
// a conflict too, a *RevertLimitError naming it and the limit. Once ctx is
// done it stops between paths and returns ctx's error.
func (r *Repository) Revert(ctx context.Context, commit, onto plumbing.Hash) (plumbing.Hash, error) {
	if err := r.mu.Lock(ctx); err != nil {
		return plumbing.ZeroHash, err
	}
	defer r.mu.Unlock()
	tree, err := r.revertLocked(ctx, commit, onto)
	if err != nil {
		var ce *ConflictError
		var le *RevertLimitError
		if errors.As(err, &ce) || errors.As(err, &le) {
			return plumbing.ZeroHash, err
		}
		return plumbing.ZeroHash, fmt.Errorf("revert %s: %w", short(commit), err)
	}
	return tree, nil
}

func (r *Repository) revertLocked(ctx context.Context, commit, onto plumbing.Hash) (plumbing.Hash, error) {
	c, err := object.GetCommit(r.st, commit)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("commit: %w", err)
	}
	base, err := c.Tree()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	var theirs *object.Tree // nil: the empty tree before a root commit
	if len(c.ParentHashes) > 0 {
		p, err := object.GetCommit(r.st, c.ParentHashes[0])
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("parent: %w", err)
		}
		if theirs, err = p.Tree(); err != nil {
			return plumbing.ZeroHash, err
		}
	}
	ours, err := object.GetTree(r.st, onto)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("tree %s: %w", short(onto), err)
	}
	changes, err := r.diffTrees(ctx, base, theirs, nil)
	if err != nil {
		return plumbing.ZeroHash, err
	}

	var updates []update
	var conflicts []string
	for _, ch := range changes {
		if err := ctx.Err(); err != nil {
			return plumbing.ZeroHash, err
		}
		p := path.Join(append(slices.Clone(ch.dir), ch.name)...)
		o, err := findEntries(r.st, ours, ch.dir, ch.name)
		if errors.Is(err, object.ErrMalformedTree) {
			conflicts = append(conflicts, p) // a later tree on the way does not parse
			continue
		}
		if err != nil {
			return plumbing.ZeroHash, err
		}
		var res []object.TreeEntry
		switch {
		case sameEntries(o, ch.from):
			res = ch.to // ours did not touch it: take theirs
		case sameEntries(o, ch.to):
			continue // already as theirs
		case len(o) > 1 || len(ch.from) > 1 || len(ch.to) > 1:
			conflicts = append(conflicts, p) // duplicate entries changed on both sides
			continue
		default:
			e, ok, err := r.mergeEntry(first(ch.from), first(o), first(ch.to))
			if le := (*RevertLimitError)(nil); errors.As(err, &le) {
				le.Commit, le.Path = commit, p
				return plumbing.ZeroHash, le
			}
			if err != nil {
				return plumbing.ZeroHash, fmt.Errorf("%s: %w", p, err)
			}
			if !ok {
				conflicts = append(conflicts, p)
				continue
			}
			if sameEntry(e, first(o)) {
				continue
			}
			if e != nil {
				res = []object.TreeEntry{*e}
			}
		}
		updates = append(updates, update{dir: ch.dir, name: ch.name, entries: res})
	}
	if len(conflicts) > 0 {
		slices.Sort(conflicts)
		return plumbing.ZeroHash, &ConflictError{Commit: commit, Paths: conflicts}
	}
	tree, blocked, err := r.applyUpdates(onto, updates)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if len(blocked) > 0 {
		return plumbing.ZeroHash, &ConflictError{Commit: commit, Paths: blocked}
	}
	return tree, nil
}

// change is one name in one directory that the reverted commit changed:
// from its entries (usually one; none when it added the name; more than
// one in a tree with duplicate entries) to its parent's.
type change struct {
	dir      []string // the directory's path, names that are safe to walk
	name     string
	from, to []object.TreeEntry
}

// diffTrees lists what differs between trees a and b (nil: empty), as
// `git diff-tree -r` does, comparing entries by their exact name. Unlike
// go-git's DiffTree it reads trees that git fsck would refuse: a name that
// is not safe to walk (".git", "x/y", "..", ...) is never descended into
// but changed as a whole, and duplicate names are compared as lists, so a
// revert can take such entries out again.
func (r *Repository) diffTrees(ctx context.Context, a, b *object.Tree, dir []string) ([]change, error) {
	ga, gb := groupEntries(a), groupEntries(b)
	names := map[string]struct{}{}
	for n := range ga {
		names[n] = struct{}{}
	}
	for n := range gb {
		names[n] = struct{}{}
	}
	var out []change
	for _, name := range sortedKeys(names) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ea, eb := ga[name], gb[name]
		if sameEntries(ea, eb) {
			continue
		}
		if len(ea) > 1 || len(eb) > 1 || !walkable(name) || !isDirOrNone(ea) && !isDirOrNone(eb) {
			out = append(out, change{dir: dir, name: name, from: ea, to: eb})
			continue
		}
		// A directory on at least one side: compare what is in it, and
		// the file it replaces or that replaces it as one change.
		sub := append(slices.Clone(dir), name)
		ta, errA := r.subtree(ea)
		tb, errB := r.subtree(eb)
		if errors.Is(errA, object.ErrMalformedTree) || errors.Is(errB, object.ErrMalformedTree) {
			// A tree that does not parse is changed as a whole.
			out = append(out, change{dir: dir, name: name, from: ea, to: eb})
			continue
		}
		if err := cmp.Or(errA, errB); err != nil {
			return nil, err
		}
		fa, fb := nonDir(ea), nonDir(eb)
		if len(fa) > 0 || len(fb) > 0 {
			out = append(out, change{dir: dir, name: name, from: fa, to: fb})
		}
		cs, err := r.diffTrees(ctx, ta, tb, sub)
		if err != nil {
			return nil, err
		}
		out = append(out, cs...)
	}
	return out, nil
}

// groupEntries maps each name in t to its entries, in the tree's order.
func groupEntries(t *object.Tree) map[string][]object.TreeEntry {
	g := map[string][]object.TreeEntry{}
	if t == nil {
		return g
	}
	for _, e := range t.Entries {
		g[e.Name] = append(g[e.Name], e)
	}
	return g
}

// walkable reports whether a name is safe to use as a path component.
func walkable(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.Contains(name, "/") && !isDotGit(name)
}

func isDirOrNone(es []object.TreeEntry) bool { return len(es) == 0 || es[0].Mode == filemode.Dir }

func nonDir(es []object.TreeEntry) []object.TreeEntry {
	if len(es) == 1 && es[0].Mode == filemode.Dir {
		return nil
	}
	return es
}

// subtree reads the tree of a single directory entry; nil for anything else.
func (r *Repository) subtree(es []object.TreeEntry) (*object.Tree, error) {
	if len(es) != 1 || es[0].Mode != filemode.Dir {
		return nil, nil
	}
	return object.GetTree(r.st, es[0].Hash)
}

func sameEntries(a, b []object.TreeEntry) bool {
	return slices.EqualFunc(a, b, func(x, y object.TreeEntry) bool { return sameEntry(&x, &y) })
}

func first(es []object.TreeEntry) *object.TreeEntry {
	if len(es) == 0 {
		return nil
	}
	e := es[0]
	return &e
}

// findEntries returns the entries named name in the directory dir of t;
// none if there are none or a parent is not a directory.
func findEntries(s storer.EncodedObjectStorer, t *object.Tree, dir []string, name string) ([]object.TreeEntry, error) {
	for _, d := range dir {
		j := slices.IndexFunc(t.Entries, func(e object.TreeEntry) bool { return e.Name == d })
		if j < 0 || t.Entries[j].Mode != filemode.Dir {
			return nil, nil
		}
		sub, err := object.GetTree(s, t.Entries[j].Hash)
		if err != nil {
			return nil, err
		}
		t = sub
	}
	var out []object.TreeEntry
	for _, e := range t.Entries {
		if e.Name == name {
			out = append(out, e)
		}
	}
	return out, nil
}

func sameEntry(a, b *object.TreeEntry) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Hash == b.Hash && normMode(a.Mode) == normMode(b.Mode)
}

// normMode folds git's deprecated group-writable mode into the regular one, as git does.
func normMode(m filemode.FileMode) filemode.FileMode {
	if m == filemode.Deprecated {
		return filemode.Regular
	}
	return m
}

func isRegular(e *object.TreeEntry) bool {
	m := normMode(e.Mode)
	return m == filemode.Regular || m == filemode.Executable
}

// mergeEntry merges one path three ways: base b, ours o, theirs t (nil = absent).
func (r *Repository) mergeEntry(b, o, t *object.TreeEntry) (*object.TreeEntry, bool, error) {
	switch {
	case sameEntry(o, b):
		return t, true, nil // ours did not touch it: take theirs
	case sameEntry(o, t):
		return o, true, nil // already as theirs
	case b == nil || o == nil || t == nil:
		return nil, false, nil // added/deleted on one side, changed on the other
	case !isRegular(b) || !isRegular(o) || !isRegular(t):
		return nil, false, nil // symlinks, submodules, directories: no content merge
	}
	mode, ok := merge3Mode(normMode(b.Mode), normMode(o.Mode), normMode(t.Mode))
	if !ok {
		return nil, false, nil
	}
	var hash plumbing.Hash
	switch {
	case b.Hash == o.Hash:
		hash = t.Hash
	case b.Hash == t.Hash, o.Hash == t.Hash:
		hash = o.Hash
	default:
		lim := r.revert.withDefaults()
		for _, e := range []*object.TreeEntry{b, o, t} {
			size, err := r.st.EncodedObjectSize(e.Hash)
			if err != nil {
				return nil, false, fmt.Errorf("blob %s: %w", short(e.Hash), err)
			}
			if size > lim.MaxFileBytes {
				return nil, false, &RevertLimitError{Size: size, Limit: lim.MaxFileBytes, Unit: "bytes"}
			}
		}
		bb, err := readBlob(r.st, b.Hash)
		if err != nil {
			return nil, false, err
		}
		ob, err := readBlob(r.st, o.Hash)
		if err != nil {
			return nil, false, err
		}
		tb, err := readBlob(r.st, t.Hash)
		if err != nil {
			return nil, false, err
		}
		if isBinary(bb) || isBinary(ob) || isBinary(tb) {
			return nil, false, nil
		}
		for _, data := range [][]byte{bb, ob, tb} {
			if n := countLines(data); n > lim.MaxFileLines {
				return nil, false, &RevertLimitError{Size: int64(n), Limit: int64(lim.MaxFileLines), Unit: "lines"}
			}
		}
		merged, ok, err := merge3(bb, ob, tb)
		if err != nil || !ok {
			return nil, false, err
		}
		if hash, err = writeBlob(r.st, merged); err != nil {
			return nil, false, err
		}
	}
	return &object.TreeEntry{Name: o.Name, Mode: mode, Hash: hash}, true, nil
}

// countLines counts lines as splitLines splits them.
func countLines(b []byte) int {
	n := bytes.Count(b, []byte{'\n'})
	if len(b) > 0 && b[len(b)-1] != '\n' {
		n++
	}
	return n
}

func merge3Mode(b, o, t filemode.FileMode) (filemode.FileMode, bool) {
	switch {
	case o == b:
		return t, true
	case t == b, t == o:
		return o, true
	default:
		return 0, false
	}
}

func readBlob(s storer.EncodedObjectStorer, h plumbing.Hash) ([]byte, error) {
	obj, err := s.EncodedObject(plumbing.BlobObject, h)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", short(h), err)
	}
	rd, err := obj.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	return io.ReadAll(rd)
}

func writeBlob(s storer.EncodedObjectStorer, b []byte) (plumbing.Hash, error) {
	obj := s.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	obj.SetSize(int64(len(b)))
	w, err := obj.Writer()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if _, err := w.Write(b); err != nil {
		w.Close()
		return plumbing.ZeroHash, err
	}
	if err := w.Close(); err != nil {
		return plumbing.ZeroHash, err
	}
	return s.SetEncodedObject(obj)
}

// update sets the entries named name in the directory dir (none deletes it).
type update struct {
	dir     []string
	name    string
	entries []object.TreeEntry
}

// updateTree writes a copy of tree with the entries at the given paths set
// (nil deletes), creating and pruning directories as needed. Paths that
// cannot be written because a parent is not a directory are returned as
// blocked.
func (r *Repository) updateTree(tree plumbing.Hash, updates map[string]*object.TreeEntry) (plumbing.Hash, []string, error) {
	ups := make([]update, 0, len(updates))
	for p, e := range updates {
		parts := strings.Split(p, "/")
		u := update{dir: parts[:len(parts)-1], name: parts[len(parts)-1]}
		if e != nil {
			u.entries = []object.TreeEntry{{Name: u.name, Mode: e.Mode, Hash: e.Hash}}
		}
		ups = append(ups, u)
	}
	return r.applyUpdates(tree, ups)
}

// applyUpdates is updateTree for updates that name their directory and
// entry apart, so that an entry whose name has a slash can be set too.
func (r *Repository) applyUpdates(tree plumbing.Hash, ups []update) (plumbing.Hash, []string, error) {
	var t *object.Tree
	if !tree.IsZero() {
		var err error
		if t, err = object.GetTree(r.st, tree); err != nil {
			return plumbing.ZeroHash, nil, err
		}
	}
	h, _, blocked, err := r.buildTree(t, "", ups)
	slices.Sort(blocked)
	return h, blocked, err
}

// buildTree applies updates (directories relative to t) to t (nil =
// empty). It reports whether the result is empty; an empty subtree is
// left out of its parent, as git never stores one. A directory it
// rewrites comes out as git writes one: sorted, each name once.
func (r *Repository) buildTree(t *object.Tree, prefix string, ups []update) (plumbing.Hash, bool, []string, error) {
	entries := map[string][]object.TreeEntry{}
	if t != nil {
		for _, e := range t.Entries {
			entries[e.Name] = []object.TreeEntry{e}
		}
	}
	sub := map[string][]update{}
	for _, u := range ups {
		if len(u.dir) == 0 {
			if len(u.entries) == 0 {
				delete(entries, u.name)
			} else {
				entries[u.name] = u.entries[:1]
			}
			continue
		}
		sub[u.dir[0]] = append(sub[u.dir[0]], update{dir: u.dir[1:], name: u.name, entries: u.entries})
	}
	var blocked []string
	for _, dir := range sortedKeys(sub) {
		ups := sub[dir]
		var st *object.Tree
		if es, ok := entries[dir]; ok {
			if es[0].Mode != filemode.Dir {
				for _, u := range ups {
					if len(u.entries) > 0 {
						blocked = append(blocked, path.Join(append([]string{prefix + dir}, append(u.dir, u.name)...)...))
					}
				}
				continue
			}
			var err error
			if st, err = object.GetTree(r.st, es[0].Hash); err != nil {
				return plumbing.ZeroHash, false, nil, err
			}
		}
		h, empty, b, err := r.buildTree(st, prefix+dir+"/", ups)
		if err != nil {
			return plumbing.ZeroHash, false, nil, err
		}
		blocked = append(blocked, b...)
		if empty {
			delete(entries, dir)
		} else {
			entries[dir] = []object.TreeEntry{{Name: dir, Mode: filemode.Dir, Hash: h}}
		}
	}
	flat := make(map[string]object.TreeEntry, len(entries))
	for name, es := range entries {
		flat[name] = object.TreeEntry{Name: name, Mode: es[0].Mode, Hash: es[0].Hash}
	}
	h, err := writeTree(r.st, flat)
	return h, len(flat) == 0, blocked, err
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// writeTree stores a tree object with git's entry order: by name, a tree
// sorting as if its name ended in "/".
func writeTree(s storer.EncodedObjectStorer, entries map[string]object.TreeEntry) (plumbing.Hash, error) {
	list := make([]object.TreeEntry, 0, len(entries))
	for _, e := range entries {
		list = append(list, e)
	}
	key := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	slices.SortFunc(list, func(a, b object.TreeEntry) int { return strings.Compare(key(a), key(b)) })
	t := &object.Tree{Entries: list}
	obj := s.NewEncodedObject()
	if err := t.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return s.SetEncodedObject(obj)
}

// CommitTree writes a commit of tree with the given parent (ZeroHash for a
// root commit) and message, authored and committed by Options.Author now.
// It only writes the local store; Push publishes it.
func (r *Repository) CommitTree(ctx context.Context, tree, parent plumbing.Hash, message string) (plumbing.Hash, error) {
	if err := r.mu.Lock(ctx); err != nil {
		return plumbing.ZeroHash, err
	}
	defer r.mu.Unlock()
	return r.commitTreeLocked(tree, parent, message, time.Now())
}

func (r *Repository) commitTreeLocked(tree, parent plumbing.Hash, message string, when time.Time) (plumbing.Hash, error) {
	if _, err := object.GetTree(r.st, tree); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("commit tree %s: %w", short(tree), err)
	}
	var parents []plumbing.Hash
	if !parent.IsZero() {
		if _, err := object.GetCommit(r.st, parent); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("commit tree: parent %s: %w", short(parent), err)
		}
		parents = []plumbing.Hash{parent}
	}
	sig := object.Signature{Name: r.author.Name, Email: r.author.Email, When: when}
	c := &object.Commit{
		Author:       sig,
		Committer:    sig,
		Message:      message,
		TreeHash:     tree,
		ParentHashes: parents,
	}
	obj := r.st.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return r.st.SetEncodedObject(obj)
}
