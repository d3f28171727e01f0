package gitrepo

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

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
func (r *Repository) Revert(commit, onto plumbing.Hash) (plumbing.Hash, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tree, err := r.revertLocked(commit, onto)
	if err != nil {
		var ce *ConflictError
		if errors.As(err, &ce) {
			return plumbing.ZeroHash, err
		}
		return plumbing.ZeroHash, fmt.Errorf("revert %s: %w", short(commit), err)
	}
	return tree, nil
}

func (r *Repository) revertLocked(commit, onto plumbing.Hash) (plumbing.Hash, error) {
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
	changes, err := object.DiffTree(base, theirs)
	if err != nil {
		return plumbing.ZeroHash, err
	}

	updates := map[string]*object.TreeEntry{}
	var conflicts []string
	for _, ch := range changes {
		p := ch.From.Name
		if p == "" {
			p = ch.To.Name
		}
		b := entryOf(ch.From)
		t := entryOf(ch.To)
		o, err := findEntry(r.st, ours, p)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		res, ok, err := r.mergeEntry(b, o, t)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("%s: %w", p, err)
		}
		if !ok {
			conflicts = append(conflicts, p)
			continue
		}
		if !sameEntry(res, o) {
			updates[p] = res
		}
	}
	if len(conflicts) > 0 {
		slices.Sort(conflicts)
		return plumbing.ZeroHash, &ConflictError{Commit: commit, Paths: conflicts}
	}
	tree, blocked, err := r.updateTree(onto, updates)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if len(blocked) > 0 {
		return plumbing.ZeroHash, &ConflictError{Commit: commit, Paths: blocked}
	}
	return tree, nil
}

// entryOf returns the change entry's tree entry, nil for "absent".
func entryOf(e object.ChangeEntry) *object.TreeEntry {
	if e.Name == "" && e.TreeEntry.Hash.IsZero() {
		return nil
	}
	te := e.TreeEntry
	return &te
}

// findEntry returns the entry at p in t, nil if there is none (including when
// a parent of p is not a directory).
func findEntry(s storer.EncodedObjectStorer, t *object.Tree, p string) (*object.TreeEntry, error) {
	parts := strings.Split(p, "/")
	for i, name := range parts {
		j := slices.IndexFunc(t.Entries, func(e object.TreeEntry) bool { return e.Name == name })
		if j < 0 {
			return nil, nil
		}
		e := t.Entries[j]
		if i == len(parts)-1 {
			return &e, nil
		}
		if e.Mode != filemode.Dir {
			return nil, nil
		}
		sub, err := object.GetTree(s, e.Hash)
		if err != nil {
			return nil, err
		}
		t = sub
	}
	return nil, nil
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

// updateTree writes a copy of tree with the entries at the given paths set
// (nil deletes), creating and pruning directories as needed. Paths that
// cannot be written because a parent is not a directory are returned as
// blocked.
func (r *Repository) updateTree(tree plumbing.Hash, updates map[string]*object.TreeEntry) (plumbing.Hash, []string, error) {
	var t *object.Tree
	if !tree.IsZero() {
		var err error
		if t, err = object.GetTree(r.st, tree); err != nil {
			return plumbing.ZeroHash, nil, err
		}
	}
	h, _, blocked, err := r.buildTree(t, "", updates)
	slices.Sort(blocked)
	return h, blocked, err
}

// buildTree applies updates (paths relative to t) to t (nil = empty). It
// reports whether the result is empty; an empty subtree is left out of its
// parent, as git never stores one.
func (r *Repository) buildTree(t *object.Tree, prefix string, updates map[string]*object.TreeEntry) (plumbing.Hash, bool, []string, error) {
	entries := map[string]object.TreeEntry{}
	if t != nil {
		for _, e := range t.Entries {
			entries[e.Name] = e
		}
	}
	direct := map[string]*object.TreeEntry{}
	sub := map[string]map[string]*object.TreeEntry{}
	for p, e := range updates {
		dir, rest, nested := strings.Cut(p, "/")
		if !nested {
			direct[p] = e
			continue
		}
		if sub[dir] == nil {
			sub[dir] = map[string]*object.TreeEntry{}
		}
		sub[dir][rest] = e
	}
	for name, e := range direct {
		if e == nil {
			delete(entries, name)
			continue
		}
		entries[name] = object.TreeEntry{Name: name, Mode: e.Mode, Hash: e.Hash}
	}
	var blocked []string
	for _, dir := range sortedKeys(sub) {
		ups := sub[dir]
		var st *object.Tree
		if e, ok := entries[dir]; ok {
			if e.Mode != filemode.Dir {
				for p, u := range ups {
					if u != nil {
						blocked = append(blocked, prefix+dir+"/"+p)
					}
				}
				continue
			}
			var err error
			if st, err = object.GetTree(r.st, e.Hash); err != nil {
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
			entries[dir] = object.TreeEntry{Name: dir, Mode: filemode.Dir, Hash: h}
		}
	}
	h, err := writeTree(r.st, entries)
	return h, len(entries) == 0, blocked, err
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
func (r *Repository) CommitTree(tree, parent plumbing.Hash, message string) (plumbing.Hash, error) {
	r.mu.Lock()
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
