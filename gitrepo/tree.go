package gitrepo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// maxSymlinkHops bounds symlink resolution, as the kernel's ELOOP does.
const maxSymlinkHops = 40

// errSymlinkLoop is returned when resolving a path takes too many symlinks.
var errSymlinkLoop = errors.New("too many levels of symbolic links")

// TreeFS returns a read-only view of a tree object as an io/fs file system.
// It implements fs.ReadLinkFS: Lstat and ReadLink report symlink entries
// (mode 120000) with their target. Open, Stat, ReadFile and ReadDir follow a
// symlink only when it resolves inside the tree; an absolute target or one
// that climbs above the root gives an error wrapping ErrSymlinkEscape, naming
// the path. Submodules (gitlinks) appear as empty directories, as in a
// checkout without submodules. Blob contents are read into memory on Open.
// The view reads objects from the repository lazily; it is safe for
// concurrent use.
func (r *Repository) TreeFS(tree plumbing.Hash) (fs.FS, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := object.GetTree(r.st, tree); err != nil {
		return nil, fmt.Errorf("tree %s: %w", short(tree), err)
	}
	return &treeFS{r: r, root: tree}, nil
}

type treeFS struct {
	r    *Repository
	root plumbing.Hash
}

var (
	_ fs.ReadLinkFS = (*treeFS)(nil)
	_ fs.StatFS     = (*treeFS)(nil)
	_ fs.ReadFileFS = (*treeFS)(nil)
	_ fs.ReadDirFS  = (*treeFS)(nil)
)

// node is one resolved entry of the tree.
type node struct {
	name string // base name; "." for the root
	mode filemode.FileMode
	hash plumbing.Hash // blob, tree or gitlink commit
}

func (n node) isDir() bool { return n.mode == filemode.Dir || n.mode == filemode.Submodule }

// getTree reads a tree object under the repository lock.
func (f *treeFS) getTree(h plumbing.Hash) (*object.Tree, error) {
	f.r.mu.Lock()
	defer f.r.mu.Unlock()
	return object.GetTree(f.r.st, h)
}

// readBlob reads a whole blob under the repository lock.
func (f *treeFS) readBlob(h plumbing.Hash) ([]byte, error) {
	f.r.mu.Lock()
	defer f.r.mu.Unlock()
	return readBlob(f.r.st, h)
}

// blobSize reads a blob's size without its content.
func (f *treeFS) blobSize(h plumbing.Hash) (int64, error) {
	f.r.mu.Lock()
	defer f.r.mu.Unlock()
	return f.r.st.EncodedObjectSize(h)
}

// resolve walks name from the root. Symlinks in the middle of the path are
// always followed; a final symlink only if follow is set.
func (f *treeFS) resolve(op, name string, follow bool) (node, error) {
	if !fs.ValidPath(name) {
		return node{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	fail := func(err error) (node, error) { return node{}, &fs.PathError{Op: op, Path: name, Err: err} }

	rest := splitPath(name)
	// stack holds the directories from the root to the current one.
	stack := []node{{name: ".", mode: filemode.Dir, hash: f.root}}
	hops := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 1 {
				return fail(ErrSymlinkEscape)
			}
			stack = stack[:len(stack)-1]
			continue
		}
		dir := stack[len(stack)-1]
		if dir.mode == filemode.Submodule {
			return fail(fs.ErrNotExist)
		}
		t, err := f.getTree(dir.hash)
		if err != nil {
			return fail(err)
		}
		i := slices.IndexFunc(t.Entries, func(e object.TreeEntry) bool { return e.Name == c })
		if i < 0 {
			return fail(fs.ErrNotExist)
		}
		e := t.Entries[i]
		n := node{name: c, mode: e.Mode, hash: e.Hash}
		if n.mode == filemode.Symlink && (len(rest) > 0 || follow) {
			if hops++; hops > maxSymlinkHops {
				return fail(errSymlinkLoop)
			}
			target, err := f.readBlob(n.hash)
			if err != nil {
				return fail(err)
			}
			if len(target) == 0 || target[0] == '/' {
				return fail(ErrSymlinkEscape)
			}
			rest = append(splitPath(string(target)), rest...)
			continue
		}
		if len(rest) == 0 {
			return n, nil
		}
		if !n.isDir() {
			return fail(fs.ErrNotExist) // a file used as a directory
		}
		stack = append(stack, n)
	}
	// The path named a directory, possibly through symlinks.
	n := stack[len(stack)-1]
	if len(stack) == 1 {
		n.name = "."
	}
	if name != "." {
		n.name = path.Base(name)
	}
	return n, nil
}

func splitPath(p string) []string {
	if p == "." || p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// Open opens the named file or directory, following symlinks inside the tree.
func (f *treeFS) Open(name string) (fs.File, error) {
	n, err := f.resolve("open", name, true)
	if err != nil {
		return nil, err
	}
	n.name = baseName(name)
	if n.isDir() {
		entries, err := f.readDir("open", name, n)
		if err != nil {
			return nil, err
		}
		return &treeDir{info: f.infoOf(n, 0), entries: entries}, nil
	}
	data, err := f.readBlob(n.hash)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return &treeFile{info: f.infoOf(n, int64(len(data))), Reader: bytes.NewReader(data)}, nil
}

// Stat returns the FileInfo of name, following symlinks.
func (f *treeFS) Stat(name string) (fs.FileInfo, error) {
	n, err := f.resolve("stat", name, true)
	if err != nil {
		return nil, err
	}
	n.name = baseName(name)
	return f.statNode("stat", name, n)
}

// Lstat returns the FileInfo of name without following a final symlink.
func (f *treeFS) Lstat(name string) (fs.FileInfo, error) {
	n, err := f.resolve("lstat", name, false)
	if err != nil {
		return nil, err
	}
	n.name = baseName(name)
	return f.statNode("lstat", name, n)
}

// ReadLink returns the target of the symlink name, as stored.
func (f *treeFS) ReadLink(name string) (string, error) {
	n, err := f.resolve("readlink", name, false)
	if err != nil {
		return "", err
	}
	if n.mode != filemode.Symlink {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	b, err := f.readBlob(n.hash)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
	}
	return string(b), nil
}

// ReadFile returns the content of the named file, following symlinks.
func (f *treeFS) ReadFile(name string) ([]byte, error) {
	n, err := f.resolve("readfile", name, true)
	if err != nil {
		return nil, err
	}
	if n.isDir() {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: errIsDir}
	}
	b, err := f.readBlob(n.hash)
	if err != nil {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: err}
	}
	return b, nil
}

var errIsDir = errors.New("is a directory")

// ReadDir lists the named directory, sorted by name.
func (f *treeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	n, err := f.resolve("readdir", name, true)
	if err != nil {
		return nil, err
	}
	if !n.isDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errNotDir}
	}
	return f.readDir("readdir", name, n)
}

var errNotDir = errors.New("not a directory")

func (f *treeFS) readDir(op, name string, dir node) ([]fs.DirEntry, error) {
	if dir.mode == filemode.Submodule {
		return []fs.DirEntry{}, nil
	}
	t, err := f.getTree(dir.hash)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	out := make([]fs.DirEntry, 0, len(t.Entries))
	for _, e := range t.Entries {
		out = append(out, &dirEntry{f: f, n: node{name: e.Name, mode: e.Mode, hash: e.Hash}})
	}
	// Git orders "a.b" before "a" when "a" is a tree ("a/"); io/fs wants plain name order.
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

func baseName(name string) string {
	if name == "." {
		return "."
	}
	return path.Base(name)
}

func (f *treeFS) statNode(op, name string, n node) (fs.FileInfo, error) {
	var size int64
	if !n.isDir() {
		s, err := f.blobSize(n.hash)
		if err != nil {
			return nil, &fs.PathError{Op: op, Path: name, Err: err}
		}
		size = s
	}
	return f.infoOf(n, size), nil
}

func (f *treeFS) infoOf(n node, size int64) *fileInfo {
	return &fileInfo{name: n.name, size: size, mode: fsMode(n.mode), hash: n.hash}
}

// fsMode maps git's file modes to io/fs modes.
func fsMode(m filemode.FileMode) fs.FileMode {
	switch m {
	case filemode.Dir, filemode.Submodule:
		return fs.ModeDir | 0o555
	case filemode.Symlink:
		return fs.ModeSymlink | 0o777
	case filemode.Executable:
		return 0o555
	default:
		return 0o444
	}
}

type fileInfo struct {
	name string
	size int64
	mode fs.FileMode
	hash plumbing.Hash
}

func (i *fileInfo) Name() string       { return i.name }
func (i *fileInfo) Size() int64        { return i.size }
func (i *fileInfo) Mode() fs.FileMode  { return i.mode }
func (i *fileInfo) ModTime() time.Time { return time.Time{} }
func (i *fileInfo) IsDir() bool        { return i.mode.IsDir() }

// Sys returns the object's hash (plumbing.Hash).
func (i *fileInfo) Sys() any { return i.hash }

type dirEntry struct {
	f *treeFS
	n node
}

func (d *dirEntry) Name() string      { return d.n.name }
func (d *dirEntry) IsDir() bool       { return d.n.isDir() }
func (d *dirEntry) Type() fs.FileMode { return fsMode(d.n.mode).Type() }
func (d *dirEntry) Info() (fs.FileInfo, error) {
	return d.f.statNode("stat", d.n.name, d.n)
}
func (d *dirEntry) String() string { return fs.FormatDirEntry(d) }

type treeFile struct {
	*bytes.Reader
	info   *fileInfo
	closed bool
}

func (f *treeFile) Stat() (fs.FileInfo, error) { return f.info, nil }

func (f *treeFile) Read(p []byte) (int, error) {
	if f.closed {
		return 0, fs.ErrClosed
	}
	return f.Reader.Read(p)
}

func (f *treeFile) Close() error {
	if f.closed {
		return fs.ErrClosed
	}
	f.closed = true
	return nil
}

type treeDir struct {
	info    *fileInfo
	entries []fs.DirEntry
	off     int
}

func (d *treeDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *treeDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: errIsDir}
}
func (d *treeDir) Close() error { return nil }

// ReadDir follows fs.ReadDirFile: n > 0 reads at most n entries and returns
// io.EOF at the end; n <= 0 reads all that remain.
func (d *treeDir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.off:]
	if n <= 0 {
		d.off = len(d.entries)
		return slices.Clone(rest), nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(rest))
	d.off += n
	return slices.Clone(rest[:n]), nil
}
