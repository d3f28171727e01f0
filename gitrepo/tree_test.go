package gitrepo

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-cmp/cmp"
)

var treeFixture = files{
	"kustomization.yaml":          "resources:\n  - base\n",
	"base/deployment.yaml":        "kind: Deployment\n",
	"base/service.yaml":           "kind: Service\n",
	"base/nested/deep/cm.yaml":    "kind: ConfigMap\n",
	"a.b":                         "sorts before a/ in git, after in io/fs\n",
	"a/x":                         "x\n",
	"scripts/run.sh":              execPrefix + "#!/bin/sh\n",
	"links/to-file":               symlinkPrefix + "../base/service.yaml",
	"links/to-dir":                symlinkPrefix + "../base/nested",
	"links/chain":                 symlinkPrefix + "to-file",
	"links/dot":                   symlinkPrefix + ".",
	"environments/staging/x.yaml": "x: 1\n",
}

func fixtureFS(t *testing.T) (*Repository, fs.FS) {
	t.Helper()
	r := memRepo(t)
	tree := mkTree(t, r, treeFixture)
	fsys, err := r.TreeFS(t.Context(), tree, TreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r, fsys
}

func TestTreeFSPassesFSTest(t *testing.T) {
	_, fsys := fixtureFS(t)
	if err := fstest.TestFS(fsys, sortedPaths(treeFixture)...); err != nil {
		t.Fatal(err)
	}
}

func TestTreeFSReadsContentAndModes(t *testing.T) {
	r := memRepo(t)
	tree := mkTree(t, r, treeFixture)
	if diff := cmp.Diff(treeFixture, treeFiles(t, r, tree)); diff != "" {
		t.Errorf("walked tree (-want +got):\n%s", diff)
	}
}

func TestTreeFSSymlinks(t *testing.T) {
	_, fsys := fixtureFS(t)
	tests := []struct {
		name, path, want string
	}{
		{name: "a link to a file is followed", path: "links/to-file", want: "kind: Service\n"},
		{name: "a link to a link is followed", path: "links/chain", want: "kind: Service\n"},
		{name: "a link to a directory is followed in the middle of a path", path: "links/to-dir/deep/cm.yaml", want: "kind: ConfigMap\n"},
		{name: "a link to its own directory is followed", path: "links/dot/to-file", want: "kind: Service\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fs.ReadFile(fsys, tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("ReadFile(%q) = %q, want %q", tt.path, got, tt.want)
			}
		})
	}

	target, err := fs.ReadLink(fsys, "links/to-dir")
	if err != nil || target != "../base/nested" {
		t.Errorf("ReadLink(links/to-dir) = %q, %v; want ../base/nested", target, err)
	}
	info, err := fs.Lstat(fsys, "links/to-dir")
	if err != nil || info.Mode().Type() != fs.ModeSymlink || info.Size() != int64(len("../base/nested")) {
		t.Errorf("Lstat(links/to-dir) = %v, %v; want a symlink of size %d", info, err, len("../base/nested"))
	}
	info, err = fs.Stat(fsys, "links/to-dir")
	if err != nil || !info.IsDir() || info.Name() != "to-dir" {
		t.Errorf("Stat(links/to-dir) = %v, %v; want the directory it points to, named to-dir", info, err)
	}
	if _, err := fs.ReadLink(fsys, "base/service.yaml"); err == nil {
		t.Error("ReadLink of a regular file succeeded")
	}
}

func TestTreeFSRefusesSymlinksLeavingTheTree(t *testing.T) {
	r := memRepo(t)
	tree := mkTree(t, r, files{
		"ok.yaml":         "ok\n",
		"abs":             symlinkPrefix + "/etc/passwd",
		"up":              symlinkPrefix + "../outside",
		"dir/up2":         symlinkPrefix + "../../etc/passwd",
		"dir/via":         symlinkPrefix + "../up",
		"loop/a":          symlinkPrefix + "b",
		"loop/b":          symlinkPrefix + "a",
		"dir/inside.yaml": "in\n",
	})
	fsys, err := r.TreeFS(t.Context(), tree, TreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"abs", "up", "dir/up2", "dir/via", "up/anything"} {
		for op, call := range map[string]func() error{
			"Open":     func() error { f, err := fsys.Open(p); closeIf(f); return err },
			"ReadFile": func() error { _, err := fs.ReadFile(fsys, p); return err },
			"Stat":     func() error { _, err := fs.Stat(fsys, p); return err },
		} {
			err := call()
			if !errors.Is(err, ErrSymlinkEscape) {
				t.Errorf("%s(%q) error = %v, want ErrSymlinkEscape", op, p, err)
				continue
			}
			if !strings.Contains(err.Error(), p) {
				t.Errorf("%s(%q) error %q does not name the path", op, p, err)
			}
		}
		// Lstat and ReadLink still describe the link itself.
		if !strings.Contains(p, "/anything") {
			if info, err := fs.Lstat(fsys, p); err != nil || info.Mode().Type() != fs.ModeSymlink {
				t.Errorf("Lstat(%q) = %v, %v; want the symlink", p, info, err)
			}
		}
	}
	if _, err := fs.ReadFile(fsys, "loop/a"); err == nil || errors.Is(err, ErrSymlinkEscape) {
		t.Errorf("ReadFile(loop/a) error = %v, want a symlink loop error", err)
	}
	// Walking does not follow links, so it never fails on them.
	var walked []string
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		walked = append(walked, p)
		return nil
	})
	if err != nil {
		t.Fatalf("WalkDir: %v", err)
	}
	want := []string{".", "abs", "dir", "dir/inside.yaml", "dir/up2", "dir/via", "loop", "loop/a", "loop/b", "ok.yaml", "up"}
	if diff := cmp.Diff(want, walked); diff != "" {
		t.Errorf("WalkDir (-want +got):\n%s", diff)
	}
}

func closeIf(f fs.File) {
	if f != nil {
		f.Close()
	}
}

func TestTreeFSErrors(t *testing.T) {
	_, fsys := fixtureFS(t)
	for _, p := range []string{"missing", "base/missing.yaml", "kustomization.yaml/x", "/abs", "../x", "base/"} {
		if _, err := fsys.Open(p); err == nil {
			t.Errorf("Open(%q) succeeded", p)
		}
	}
	if _, err := fsys.Open("missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(missing) error = %v, want fs.ErrNotExist", err)
	}
	if _, err := fs.ReadFile(fsys, "base"); err == nil {
		t.Error("ReadFile(directory) succeeded")
	}
	if _, err := fs.ReadDir(fsys, "kustomization.yaml"); err == nil {
		t.Error("ReadDir(file) succeeded")
	}
}

func TestTreeFSSubmoduleIsAnEmptyDirectory(t *testing.T) {
	r := memRepo(t)
	r.mu.Lock(t.Context())
	blob, _ := writeBlob(r.st, []byte("a\n"))
	tree, _, err := r.updateTree(plumbing.ZeroHash, map[string]*object.TreeEntry{
		"a":      {Mode: filemode.Regular, Hash: blob},
		"vendor": {Mode: filemode.Submodule, Hash: plumbing.NewHash(strings.Repeat("12", 20))},
	})
	r.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := r.TreeFS(t.Context(), tree, TreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(fsys, "a", "vendor"); err != nil {
		t.Fatal(err)
	}
	entries, err := fs.ReadDir(fsys, "vendor")
	if err != nil || len(entries) != 0 {
		t.Errorf("ReadDir(vendor) = %v, %v; want empty", entries, err)
	}
}

func TestTreeFSUnknownTree(t *testing.T) {
	r := memRepo(t)
	if _, err := r.TreeFS(t.Context(), plumbing.NewHash(strings.Repeat("ab", 20)), TreeOptions{}); err == nil {
		t.Error("TreeFS(unknown) succeeded")
	}
}

// TestTreeObjectsMatchGit checks that trees written here hash like git's:
// entries sorted by git's rules ("a.b" before the tree "a"), modes, nesting.
func TestTreeObjectsMatchGit(t *testing.T) {
	r := memRepo(t)
	ours := mkTree(t, r, treeFixture)
	w := newCLI(t, t.TempDir())
	w.git(t, "init", "--quiet", ".")
	w.commitFiles(t, "fixture", treeFixture)
	if theirs := w.git(t, "rev-parse", "HEAD^{tree}"); theirs != ours.String() {
		t.Errorf("tree = %s, git's = %s", ours, theirs)
	}
}
