package gitrepo

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-cmp/cmp"
)

// rawEntry is a tree entry written byte for byte, however wrong.
type rawEntry struct {
	mode, name string
	hash       plumbing.Hash
}

func rawTreeBytes(entries []rawEntry) []byte {
	var b []byte
	for _, e := range entries {
		b = append(b, e.mode+" "+e.name+"\x00"...)
		b = append(b, e.hash[:]...)
	}
	return b
}

// writeRawTree stores a tree object of exactly these entries, as
// `git hash-object -t tree --literally` would.
func writeRawTree(t testing.TB, r *Repository, entries []rawEntry) plumbing.Hash {
	t.Helper()
	r.mu.Lock(t.Context())
	defer r.mu.Unlock()
	data := rawTreeBytes(entries)
	obj := r.st.NewEncodedObject()
	obj.SetType(plumbing.TreeObject)
	obj.SetSize(int64(len(data)))
	w, err := obj.Writer()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	w.Close()
	h, err := r.st.SetEncodedObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// hostileTrees are trees git fsck refuses or warns about (receive.fsckObjects
// refuses both), each meant to sit at env/bad; want is the *TreeError.
func hostileTrees(blob, tree plumbing.Hash) []struct {
	name    string
	entries []rawEntry
	want    string
} {
	return []struct {
		name    string
		entries []rawEntry
		want    string
	}{
		{"a duplicate file entry", []rawEntry{{"100644", "a.yaml", blob}, {"100644", "a.yaml", blob}}, "env/bad/a.yaml: appears twice in its tree"},
		{"a file and a directory of the same name", []rawEntry{{"100644", "x", blob}, {"40000", "x", tree}}, "env/bad/x: appears twice in its tree"},
		{"an entry x/y beside the directory x", []rawEntry{{"40000", "x", tree}, {"100644", "x/y", blob}}, "env/bad/x/y: is a tree entry whose name contains a slash"},
		{"a directory .git", []rawEntry{{"40000", ".git", tree}}, `env/bad/.git: is a tree entry named like .git (".git")`},
		{"a file .GIT", []rawEntry{{"100644", ".GIT", blob}}, `env/bad/.GIT: is a tree entry named like .git`},
		{"a directory .git with a trailing space (NTFS)", []rawEntry{{"40000", ".git ", tree}}, `env/bad/.git : is a tree entry named like .git`},
		{"the 8.3 short name git~1 (NTFS)", []rawEntry{{"40000", "git~1", tree}}, `env/bad/git~1: is a tree entry named like .git`},
		{"a .git with a code point HFS+ ignores", []rawEntry{{"40000", ".g\u200cit", tree}}, "env/bad/.g\u200cit: is a tree entry named like .git"},
		{"an entry named ..", []rawEntry{{"100644", "..", blob}}, `env/bad/..: is a tree entry named ".."`},
		{"an entry named .", []rawEntry{{"100644", ".", blob}}, `env/bad/.: is a tree entry named "."`},
		{"an entry with an empty name", []rawEntry{{"100644", "", blob}}, "does not parse: malformed tree: empty filename"},
		{"a symlinked .gitmodules", []rawEntry{{"120000", ".gitmodules", blob}}, "env/bad/.gitmodules: is a symbolic link"},
		{"entries out of order", []rawEntry{{"100644", "b.yaml", blob}, {"100644", "a.yaml", blob}}, "env/bad/a.yaml: is out of git's order in its tree"},
		{"a tree object that does not parse", []rawEntry{{"10z644", "a.yaml", blob}}, "env/bad: tree object"},
	}
}

// TestTreeFSRefusesWhatGitFsckRefuses: a tree entry git fsck flags (and a
// checkout would read another way, or refuse) gives a *TreeError naming
// its path as soon as a lookup passes through its tree; trees no lookup
// passes through are not read. Each tree is also checked with git fsck.
func TestTreeFSRefusesWhatGitFsckRefuses(t *testing.T) {
	r := memRepo(t)
	good := files{"env/good.yaml": "a: 1\n", "other/x.yaml": "x: 1\n"}
	base := mkTree(t, r, good)
	r.mu.Lock(t.Context())
	blob, _ := writeBlob(r.st, []byte("a: 1\n"))
	r.mu.Unlock()
	sub := mkTree(t, r, files{"c.yaml": "a: 1\n"})

	// A bare repository holding the same blob and subtree, for git fsck.
	git := newCLI(t, t.TempDir())
	git.git(t, "init", "--quiet", "--bare", ".")
	gitBlob, _ := gitStdin(t, git, "a: 1\n", "hash-object", "-w", "--stdin")
	gitSub, _ := gitStdin(t, git, fmt.Sprintf("100644 blob %s\tc.yaml\n", strings.TrimSpace(gitBlob)), "mktree")
	if strings.TrimSpace(gitSub) != sub.String() {
		t.Fatalf("git's tree %s differs from ours %s", gitSub, sub)
	}

	for _, tc := range hostileTrees(blob, sub) {
		t.Run(tc.name, func(t *testing.T) {
			raw := writeRawTree(t, r, tc.entries)
			r.mu.Lock(t.Context())
			root, _, err := r.updateTree(base, map[string]*object.TreeEntry{"env/bad": {Mode: filemode.Dir, Hash: raw}})
			r.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}

			// git itself flags the same bytes.
			h, err := gitStdin(t, git, string(rawTreeBytes(tc.entries)), "hash-object", "-w", "-t", "tree", "--literally", "--stdin")
			if err != nil || strings.TrimSpace(h) != raw.String() {
				t.Fatalf("git hash-object = %q, %v; want %s", h, err, raw)
			}
			// --strict: what receive.fsckObjects refuses, warnings included.
			_, err = git.try(t, "fsck", "--strict", "--no-dangling", raw.String())
			if ce := new(cliError); !errors.As(err, &ce) || !strings.Contains(ce.stderr, raw.String()) && !strings.Contains(ce.stderr, "empty filename") {
				t.Errorf("git fsck --strict does not refuse the tree: %v", err)
			}

			fsys, err := r.TreeFS(t.Context(), root, TreeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fs.ReadFile(fsys, "env/good.yaml"); err != nil {
				t.Errorf("ReadFile(env/good.yaml) beside the bad tree: %v", err)
			}
			for op, call := range map[string]func() error{
				"Stat":    func() error { _, err := fs.Stat(fsys, "env/bad/c.yaml"); return err },
				"ReadDir": func() error { _, err := fs.ReadDir(fsys, "env/bad"); return err },
				"Open":    func() error { f, err := fsys.Open("env/bad"); closeIf(f); return err },
			} {
				var te *TreeError
				err := call()
				if !errors.As(err, &te) || !strings.Contains(te.Error(), tc.want) {
					t.Errorf("%s through env/bad: error = %v, want a *TreeError with %q", op, err, tc.want)
				}
			}

			// At the root, TreeFS itself refuses it.
			if _, err := r.TreeFS(t.Context(), raw, TreeOptions{}); !errors.As(err, new(*TreeError)) {
				t.Errorf("TreeFS(the bad tree) error = %v, want a *TreeError", err)
			}
		})
	}
}

// TestTreeFSBlobLimits: a file's content is read only up to
// TreeOptions.MaxBlobSize and a symlink's target up to 4096 bytes, checked
// from the object's header before the content is read; Stat still reports
// the size, so a caller can refuse the file by name first.
func TestTreeFSBlobLimits(t *testing.T) {
	r := memRepo(t)
	tree := mkTree(t, r, files{
		"env/big.yaml":   strings.Repeat("a", 5000),
		"env/small.yaml": "a: 1\n",
		"env/link.yaml":  symlinkPrefix + "big.yaml",
		"env/long":       symlinkPrefix + strings.Repeat("x/", 2500) + "small.yaml",
	})
	fsys, err := r.TreeFS(t.Context(), tree, TreeOptions{MaxBlobSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"ReadFile of a file over the limit", func() error { _, err := fs.ReadFile(fsys, "env/big.yaml"); return err },
			"env/big.yaml: file of 5000 bytes is larger than the limit of 4096 bytes"},
		{"Open of a file over the limit", func() error { f, err := fsys.Open("env/big.yaml"); closeIf(f); return err },
			"env/big.yaml: file of 5000 bytes is larger than the limit of 4096 bytes"},
		{"ReadFile through a symlink names the file", func() error { _, err := fs.ReadFile(fsys, "env/link.yaml"); return err },
			"env/big.yaml: file of 5000 bytes is larger than the limit of 4096 bytes"},
		{"Stat through a symlink with a target over 4096 bytes", func() error { _, err := fs.Stat(fsys, "env/long"); return err },
			"env/long: symlink target of 5010 bytes is larger than the limit of 4096 bytes"},
		{"ReadLink of a target over 4096 bytes", func() error { _, err := fs.ReadLink(fsys, "env/long"); return err },
			"env/long: symlink target of 5010 bytes is larger than the limit of 4096 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var te *TreeError
			if err := tt.call(); !errors.As(err, &te) || te.Error() != tt.want {
				t.Errorf("error = %v, want a *TreeError %q", err, tt.want)
			}
		})
	}
	if fi, err := fs.Stat(fsys, "env/big.yaml"); err != nil || fi.Size() != 5000 {
		t.Errorf("Stat(env/big.yaml) = %v, %v; want its size, 5000", fi, err)
	}
	if b, err := fs.ReadFile(fsys, "env/small.yaml"); err != nil || string(b) != "a: 1\n" {
		t.Errorf("ReadFile(env/small.yaml) = %q, %v", b, err)
	}
}

// TestRevertTakesHostileTreesOut: reverting a commit that added a tree git
// fsck refuses, under a later commit that changed a file beside it, takes
// the tree out again and leaves the later change; the result reads cleanly.
// go-git's own tree diff fails on some of these ("directory not found"),
// which made the revert an error retried forever.
func TestRevertTakesHostileTreesOut(t *testing.T) {
	r := memRepo(t)
	r.mu.Lock(t.Context())
	blob, _ := writeBlob(r.st, []byte("a: 1\n"))
	r.mu.Unlock()
	sub := mkTree(t, r, files{"c.yaml": "a: 1\n"})
	before := files{"env/good.yaml": "a: 1\n", "other/x.yaml": "x: 1\n"}
	parent := mkCommit(t, r, plumbing.ZeroHash, "parent", before)

	for _, tc := range hostileTrees(blob, sub) {
		t.Run(tc.name, func(t *testing.T) {
			pc, err := r.Commit(t.Context(), parent)
			if err != nil {
				t.Fatal(err)
			}
			raw := writeRawTree(t, r, tc.entries)
			r.mu.Lock(t.Context())
			bad, _, err := r.updateTree(pc.Tree, map[string]*object.TreeEntry{"env/bad": {Mode: filemode.Dir, Hash: raw}})
			r.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			c, err := r.CommitTree(t.Context(), bad, parent, "hostile")
			if err != nil {
				t.Fatal(err)
			}
			later := mkTreeOn(t, r, bad, files{"env/good.yaml": "a: 2\n"})

			tree, err := r.Revert(t.Context(), c, later)
			if err != nil {
				t.Fatalf("Revert() error = %v", err)
			}
			want := merged(before, files{"env/good.yaml": "a: 2\n"})
			if diff := cmp.Diff(want, treeFiles(t, r, tree)); diff != "" {
				t.Errorf("reverted tree (-want +got):\n%s", diff)
			}
		})
	}
}

// mkTreeOn writes tree with the files in fs set.
func mkTreeOn(t *testing.T, r *Repository, tree plumbing.Hash, fs files) plumbing.Hash {
	t.Helper()
	r.mu.Lock(t.Context())
	defer r.mu.Unlock()
	updates := map[string]*object.TreeEntry{}
	for p, content := range fs {
		h, err := writeBlob(r.st, []byte(content))
		if err != nil {
			t.Fatal(err)
		}
		updates[p] = &object.TreeEntry{Mode: filemode.Regular, Hash: h}
	}
	out, _, err := r.updateTree(tree, updates)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
