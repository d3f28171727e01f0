package gitrepo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// maxSymlinkHops bounds symlink resolution, as the kernel's ELOOP does.
const maxSymlinkHops = 40

// maxSymlinkTarget bounds a symlink's target: PATH_MAX, the limit git fsck
// (symlinkTargetLength) and every file system put on it.
const maxSymlinkTarget = 4096

// errSymlinkLoop is returned when resolving a path takes too many symlinks.
var errSymlinkLoop = errors.New("too many levels of symbolic links")

// TreeError is a tree Sluice will not read: an entry git fsck refuses or
// warns about (a checkout would read it differently, or refuse it), or a
// blob over a limit. It is the commit's fault, never the infrastructure's.
type TreeError struct {
	// Path is the entry's path from the root of the tree; "." for the root.
	// A mode git does not write (100666, 040000) is not refused: git and
	// go-git both read it as the nearest of git's own, so they agree.
	Path string
	// Reason says what is wrong with it, with the limit where one was crossed.
	Reason string
}

func (e *TreeError) Error() string { return e.Path + ": " + e.Reason }

// TreeOptions bound what a TreeFS reads. A zero field takes its default
// from DefaultTreeOptions.
type TreeOptions struct {
	// MaxBlobSize bounds a file read (Open, ReadFile): a larger blob is
	// refused from its object header, before its content is read.
	// Default 1 MiB, the render's own default per file.
	MaxBlobSize int64
}

// DefaultTreeOptions returns the limits TreeFS uses when none are given.
func DefaultTreeOptions() TreeOptions { return TreeOptions{MaxBlobSize: 1 << 20} }

// TreeFS returns a read-only view of a tree object as an io/fs file system.
// It implements fs.ReadLinkFS: Lstat and ReadLink report symlink entries
// (mode 120000) with their target. Open, Stat, ReadFile and ReadDir follow a
// symlink only when it resolves inside the tree; an absolute target or one
// that climbs above the root gives an error wrapping ErrSymlinkEscape, naming
// the path. Submodules (gitlinks) appear as empty directories, as in a
// checkout without submodules. Blob contents are read into memory on Open,
// up to opts.MaxBlobSize; a symlink's target up to 4096 bytes.
//
// Each tree object is read, checked and indexed once, the first time a
// lookup passes through it: an entry git fsck would refuse or warn about
// (an empty name, ".", "..", a name with a slash, a .git look-alike, a
// duplicate name, entries out of git's order, a symlinked .gitmodules) or a tree object that does not parse gives a
// *TreeError naming the entry; so does a blob over its limit. Trees no
// lookup passes through are not read. The view reads objects from the
// repository lazily; it is safe for concurrent use.
//
// ctx bounds the view, not only the call: once it is done, every read
// through the view fails with an error wrapping ctx's, so a render of a
// cancelled candidate stops at its next file.
func (r *Repository) TreeFS(ctx context.Context, tree plumbing.Hash, opts TreeOptions) (fs.FS, error) {
	if opts.MaxBlobSize <= 0 {
		opts.MaxBlobSize = DefaultTreeOptions().MaxBlobSize
	}
	f := &treeFS{ctx: ctx, r: r, root: tree, opts: opts, dirs: map[plumbing.Hash]*dirIndex{}}
	if _, err := f.dir(tree, "."); err != nil {
		return nil, fmt.Errorf("tree %s: %w", short(tree), err)
	}
	return f, nil
}

type treeFS struct {
	ctx  context.Context
	r    *Repository
	root plumbing.Hash
	opts TreeOptions

	mu   sync.Mutex
	dirs map[plumbing.Hash]*dirIndex // every tree read so far, checked
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

// dirIndex is one checked tree object: its entries in git's order and by name.
type dirIndex struct {
	entries []object.TreeEntry
	byName  map[string]int
}

// dir returns the checked index of tree h, found at path p (for errors),
// reading it once.
func (f *treeFS) dir(h plumbing.Hash, p string) (*dirIndex, error) {
	f.mu.Lock()
	d, ok := f.dirs[h]
	f.mu.Unlock()
	if ok {
		return d, nil
	}
	t, err := f.getTree(h, p)
	if err != nil {
		return nil, err
	}
	byName, err := checkTree(t, p)
	if err != nil {
		return nil, err
	}
	d = &dirIndex{entries: t.Entries, byName: byName}
	f.mu.Lock()
	f.dirs[h] = d
	f.mu.Unlock()
	return d, nil
}

// getTree reads a tree object under the repository lock. One that is
// stored but does not parse is the commit's fault.
func (f *treeFS) getTree(h plumbing.Hash, p string) (*object.Tree, error) {
	if err := f.r.mu.Lock(f.ctx); err != nil {
		return nil, err
	}
	defer f.r.mu.Unlock()
	obj, err := f.r.st.EncodedObject(plumbing.TreeObject, h)
	if err != nil {
		return nil, err
	}
	t, err := object.DecodeTree(f.r.st, obj)
	if err != nil {
		return nil, &TreeError{Path: p, Reason: fmt.Sprintf("tree object %s does not parse: %v", short(h), err)}
	}
	return t, nil
}

// readBlob reads a whole blob under the repository lock, refusing one over
// limit bytes from its header, before reading it. p and what name it in
// the error.
func (f *treeFS) readBlob(h plumbing.Hash, limit int64, p, what string) ([]byte, error) {
	if err := f.r.mu.Lock(f.ctx); err != nil {
		return nil, err
	}
	defer f.r.mu.Unlock()
	size, err := f.r.st.EncodedObjectSize(h)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", short(h), err)
	}
	if size > limit {
		return nil, &TreeError{Path: p, Reason: fmt.Sprintf("%s of %d bytes is larger than the limit of %d bytes", what, size, limit)}
	}
	b, err := readBlob(f.r.st, h)
	if err == nil && int64(len(b)) > limit { // a header that lied
		return nil, &TreeError{Path: p, Reason: fmt.Sprintf("%s is larger than the limit of %d bytes", what, limit)}
	}
	return b, err
}

// readFile reads the content of the file n at p.
func (f *treeFS) readFile(n node, p string) ([]byte, error) {
	return f.readBlob(n.hash, f.opts.MaxBlobSize, p, "file")
}

// readLink reads the target of the symlink n at p.
func (f *treeFS) readLink(n node, p string) ([]byte, error) {
	return f.readBlob(n.hash, maxSymlinkTarget, p, "symlink target")
}

// blobSize reads a blob's size without its content.
func (f *treeFS) blobSize(h plumbing.Hash) (int64, error) {
	if err := f.r.mu.Lock(f.ctx); err != nil {
		return 0, err
	}
	defer f.r.mu.Unlock()
	return f.r.st.EncodedObjectSize(h)
}

// checkTree refuses what git fsck refuses or warns about in one tree
// object (fsck.c, fsck_tree), as receive.fsckObjects would: Sluice must
// not read a name one way where a checkout reads it another way, or
// refuses it. p is the tree's path. It returns the index of each name.
func checkTree(t *object.Tree, p string) (map[string]int, error) {
	at := func(name string) string {
		if p == "." {
			return name
		}
		return p + "/" + name
	}
	seen := make(map[string]int, len(t.Entries))
	prev := ""
	for i, e := range t.Entries {
		name := e.Name
		fail := func(format string, a ...any) error {
			return &TreeError{Path: at(name), Reason: fmt.Sprintf(format, a...)}
		}
		switch {
		case name == "":
			return nil, &TreeError{Path: p, Reason: "has an entry with an empty name"}
		case strings.Contains(name, "/"):
			return nil, fail("is a tree entry whose name contains a slash")
		case name == "." || name == "..":
			return nil, fail("is a tree entry named %q", name)
		case isDotGit(name):
			return nil, fail("is a tree entry named like .git (%q), which git refuses to check out", name)
		}
		if e.Mode == filemode.Symlink && isDotGitmodules(name) {
			return nil, fail("is a symbolic link; git refuses a .gitmodules that is not a file")
		}
		if _, dup := seen[name]; dup {
			return nil, fail("appears twice in its tree; a checkout would keep only one of them")
		}
		seen[name] = i
		key := name
		if e.Mode == filemode.Dir {
			key += "/"
		}
		if i > 0 && prev >= key {
			return nil, fail("is out of git's order in its tree")
		}
		prev = key
	}
	return seen, nil
}

// isDotGit reports whether a checkout on some file system would take name
// for ".git": case folded (.GIT), trailing spaces and dots dropped (NTFS),
// an alternate data stream (.git::$INDEX_ALLOCATION), the 8.3 short name
// (git~1), or with code points HFS+ ignores (.g\u200cit). As git's
// is_ntfs_dotgit and is_hfs_dotgit.
func isDotGit(name string) bool { return isDotName(name, ".git", "git~1") }

// isDotGitmodules is isDotGit for ".gitmodules" (short name gitmod~1).
func isDotGitmodules(name string) bool { return isDotName(name, ".gitmodules", "gitmod~1") }

func isDotName(name, dot, short string) bool {
	n := name
	for i := 0; i < len(n); i++ {
		if n[i] >= utf8.RuneSelf { // only then can there be code points HFS+ ignores
			n = strings.Map(func(r rune) rune {
				if hfsIgnorable(r) {
					return -1
				}
				return r
			}, n)
			break
		}
	}
	if i := strings.IndexByte(n, ':'); i >= 0 {
		n = n[:i]
	}
	n = strings.TrimRight(n, " .")
	return strings.EqualFold(n, dot) || strings.EqualFold(n, short)
}

// hfsIgnorable are the code points HFS+ drops when it compares names (git's
// next_hfs_char).
func hfsIgnorable(r rune) bool {
	switch {
	case r >= 0x200c && r <= 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x206a && r <= 0x206f, r == 0xfeff:
		return true
	}
	return false
}

// resolve walks name from the root. Symlinks in the middle of the path are
// always followed; a final symlink only if follow is set. It also returns
// the path of what it found, with the symlinks resolved.
func (f *treeFS) resolve(op, name string, follow bool) (node, string, error) {
	if !fs.ValidPath(name) {
		return node{}, "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	fail := func(err error) (node, string, error) {
		return node{}, "", &fs.PathError{Op: op, Path: name, Err: err}
	}

	rest := splitPath(name)
	// stack holds the directories from the root to the current one.
	stack := []node{{name: ".", mode: filemode.Dir, hash: f.root}}
	paths := []string{"."} // paths[i] is the path of stack[i]
	real := func() string { return paths[len(paths)-1] }
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
			stack, paths = stack[:len(stack)-1], paths[:len(paths)-1]
			continue
		}
		dir := stack[len(stack)-1]
		if dir.mode == filemode.Submodule {
			return fail(fs.ErrNotExist)
		}
		d, err := f.dir(dir.hash, real())
		if err != nil {
			return fail(err)
		}
		i, ok := d.byName[c]
		if !ok {
			return fail(fs.ErrNotExist)
		}
		e := d.entries[i]
		n := node{name: c, mode: e.Mode, hash: e.Hash}
		if n.mode == filemode.Symlink && (len(rest) > 0 || follow) {
			if hops++; hops > maxSymlinkHops {
				return fail(errSymlinkLoop)
			}
			target, err := f.readLink(n, path.Join(real(), c))
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
			return n, path.Join(real(), c), nil
		}
		if !n.isDir() {
			return fail(fs.ErrNotExist) // a file used as a directory
		}
		stack, paths = append(stack, n), append(paths, path.Join(real(), c))
	}
	// The path named a directory, possibly through symlinks.
	n := stack[len(stack)-1]
	if len(stack) == 1 {
		n.name = "."
	}
	if name != "." {
		n.name = path.Base(name)
	}
	return n, real(), nil
}

func splitPath(p string) []string {
	if p == "." || p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// Open opens the named file or directory, following symlinks inside the tree.
func (f *treeFS) Open(name string) (fs.File, error) {
	n, real, err := f.resolve("open", name, true)
	if err != nil {
		return nil, err
	}
	n.name = baseName(name)
	if n.isDir() {
		entries, err := f.readDir("open", name, real, n)
		if err != nil {
			return nil, err
		}
		return &treeDir{info: f.infoOf(n, 0), entries: entries}, nil
	}
	data, err := f.readFile(n, real)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return &treeFile{info: f.infoOf(n, int64(len(data))), Reader: bytes.NewReader(data)}, nil
}

// Stat returns the FileInfo of name, following symlinks.
func (f *treeFS) Stat(name string) (fs.FileInfo, error) {
	n, _, err := f.resolve("stat", name, true)
	if err != nil {
		return nil, err
	}
	n.name = baseName(name)
	return f.statNode("stat", name, n)
}

// Lstat returns the FileInfo of name without following a final symlink.
func (f *treeFS) Lstat(name string) (fs.FileInfo, error) {
	n, _, err := f.resolve("lstat", name, false)
	if err != nil {
		return nil, err
	}
	n.name = baseName(name)
	return f.statNode("lstat", name, n)
}

// ReadLink returns the target of the symlink name, as stored.
func (f *treeFS) ReadLink(name string) (string, error) {
	n, real, err := f.resolve("readlink", name, false)
	if err != nil {
		return "", err
	}
	if n.mode != filemode.Symlink {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	b, err := f.readLink(n, real)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
	}
	return string(b), nil
}

// ReadFile returns the content of the named file, following symlinks.
func (f *treeFS) ReadFile(name string) ([]byte, error) {
	n, real, err := f.resolve("readfile", name, true)
	if err != nil {
		return nil, err
	}
	if n.isDir() {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: errIsDir}
	}
	b, err := f.readFile(n, real)
	if err != nil {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: err}
	}
	return b, nil
}

var errIsDir = errors.New("is a directory")

// ReadDir lists the named directory, sorted by name.
func (f *treeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	n, real, err := f.resolve("readdir", name, true)
	if err != nil {
		return nil, err
	}
	if !n.isDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errNotDir}
	}
	return f.readDir("readdir", name, real, n)
}

var errNotDir = errors.New("not a directory")

func (f *treeFS) readDir(op, name, real string, dir node) ([]fs.DirEntry, error) {
	if dir.mode == filemode.Submodule {
		return []fs.DirEntry{}, nil
	}
	d, err := f.dir(dir.hash, real)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	out := make([]fs.DirEntry, 0, len(d.entries))
	for _, e := range d.entries {
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
