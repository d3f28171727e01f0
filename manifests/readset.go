package manifests

import (
	"context"
	"io/fs"
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// ReadSet is every tree path a render looked at, so that a later tree that
// differs from the rendered one only elsewhere is known to render the same
// objects without rendering it.
//
// The loader is the only reader of the tree: kustomize, in the render
// worker, sees nothing but the files the loader copied, so what it reads
// (and which names it finds absent there) follows from what the loader
// read. The set is therefore recorded in the daemon, where the loader runs,
// and not reported by the worker.
//
// Paths are clean, slash-separated and relative to the root of the tree
// ("." for the root), compared byte for byte, as git and gitrepo.TreeFS
// compare names. Both lists are sorted and hold no path twice.
type ReadSet struct {
	// Paths are the entries whose every detail the render depends on:
	// files read or stat'ed, symlinks (and each path their targets lead
	// through), directories listed, and paths found absent, such as the
	// kustomization.yml and Kustomization next to a kustomization.yaml. A
	// change at, above or below one of them may change the render.
	Paths []string
	// Dirs are the directories the render went through or found to be
	// directories without listing them. Only a change at or above one may
	// change the render: a directory that appears, disappears or becomes
	// something else is itself a changed path (see gitrepo's ChangedPaths),
	// while a file added beside the ones the render read is not its concern.
	Dirs []string
}

// Empty reports whether the set is unknown. Every render reads at least its
// kustomization file, so an empty set never means that a render read
// nothing; it comes from a render of a tree that cannot report symlinks,
// or from no render at all.
func (s ReadSet) Empty() bool { return len(s.Paths) == 0 && len(s.Dirs) == 0 }

// RenderWithReads is Render that also returns what the render read from
// tree. The set is empty (unknown) when tree does not implement
// io/fs.ReadLinkFS: then tree follows symlinks by itself, and the paths
// asked for need not be the paths read.
func RenderWithReads(ctx context.Context, tree fs.FS, dir string, opts RenderOptions) ([]*unstructured.Unstructured, ReadSet, error) {
	rec := newRecorder(tree)
	objs, err := Render(ctx, rec.fsys(), dir, opts)
	if err != nil {
		return nil, ReadSet{}, err
	}
	return objs, rec.set(), nil
}

// readKind is how much of an entry a render depended on; more wins.
type readKind uint8

const (
	// readDir: the entry was a directory, looked at but not listed.
	readDir readKind = iota + 1
	// readEntry: its content, target, listing or absence.
	readEntry
)

// recorder wraps a tree and notes every path asked of it.
type recorder struct {
	tree  fs.FS
	links fs.ReadLinkFS // nil: the set is unknown

	mu   sync.Mutex
	seen map[string]readKind
}

func newRecorder(tree fs.FS) *recorder {
	r := &recorder{tree: tree, seen: map[string]readKind{}}
	r.links, _ = tree.(fs.ReadLinkFS)
	return r
}

// fsys is the tree as the loader should see it: with Lstat and ReadLink
// only when tree has them, since the loader's behaviour depends on it.
func (r *recorder) fsys() fs.FS {
	if r.links != nil {
		return linkRecordingFS{recordingFS{r}}
	}
	return recordingFS{r}
}

func (r *recorder) note(name string, k readKind) {
	r.mu.Lock()
	if r.seen[name] < k {
		r.seen[name] = k
	}
	r.mu.Unlock()
}

// noteInfo notes a stat: a directory seen as one is a readDir, anything
// else (a file, a symlink, an absent path, an error) a readEntry.
func (r *recorder) noteInfo(name string, fi fs.FileInfo, err error) {
	if err == nil && fi.IsDir() {
		r.note(name, readDir)
		return
	}
	r.note(name, readEntry)
}

func (r *recorder) set() ReadSet {
	if r.links == nil {
		return ReadSet{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var s ReadSet
	for p, k := range r.seen {
		if k == readEntry {
			s.Paths = append(s.Paths, p)
		} else {
			s.Dirs = append(s.Dirs, p)
		}
	}
	slices.Sort(s.Paths)
	slices.Sort(s.Dirs)
	return s
}

// recordingFS passes every call on to the tree and notes its path. Opening
// a directory counts as listing it; a path that is not valid is noted as
// asked, since the tree answers for it too.
type recordingFS struct{ r *recorder }

var (
	_ fs.StatFS     = recordingFS{}
	_ fs.ReadFileFS = recordingFS{}
	_ fs.ReadDirFS  = recordingFS{}
	_ fs.ReadLinkFS = linkRecordingFS{}
)

func (f recordingFS) Open(name string) (fs.File, error) {
	f.r.note(name, readEntry)
	return f.r.tree.Open(name)
}

func (f recordingFS) Stat(name string) (fs.FileInfo, error) {
	fi, err := fs.Stat(f.r.tree, name)
	f.r.noteInfo(name, fi, err)
	return fi, err
}

func (f recordingFS) ReadFile(name string) ([]byte, error) {
	f.r.note(name, readEntry)
	return fs.ReadFile(f.r.tree, name)
}

func (f recordingFS) ReadDir(name string) ([]fs.DirEntry, error) {
	f.r.note(name, readEntry)
	return fs.ReadDir(f.r.tree, name)
}

// linkRecordingFS is recordingFS for a tree that reports symlinks.
type linkRecordingFS struct{ recordingFS }

// Stat follows a final symlink: a directory reached through one is noted
// as the symlink it is, whose target matters. (The loader resolves symlinks
// itself and stats only paths without any; other paths through a symlink
// are noted as asked.)
func (f linkRecordingFS) Stat(name string) (fs.FileInfo, error) {
	fi, err := fs.Stat(f.r.tree, name)
	if err == nil && fi.IsDir() {
		if li, lerr := f.r.links.Lstat(name); lerr != nil || !li.IsDir() {
			f.r.note(name, readEntry)
			return fi, err
		}
	}
	f.r.noteInfo(name, fi, err)
	return fi, err
}

func (f linkRecordingFS) Lstat(name string) (fs.FileInfo, error) {
	fi, err := f.r.links.Lstat(name)
	f.r.noteInfo(name, fi, err)
	return fi, err
}

func (f linkRecordingFS) ReadLink(name string) (string, error) {
	f.r.note(name, readEntry)
	return f.r.links.ReadLink(name)
}
