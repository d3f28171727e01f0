package gitrepo

import (
	"errors"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/google/go-cmp/cmp"
)

const kustomization = `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../base
images:
  - name: registry.example.com/a
    newTag: v2
  - name: registry.example.com/b
    newTag: v3
  - name: registry.example.com/z
    newTag: v0
`

// bump returns s with the newTag of image name set to tag.
func bump(s, name, tag string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasSuffix(l, "/"+name) && i+1 < len(lines) {
			lines[i+1] = "    newTag: " + tag
		}
	}
	return strings.Join(lines, "\n")
}

func numbered(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		b.WriteString("line ")
		b.WriteByte(byte('0' + i/10))
		b.WriteByte(byte('0' + i%10))
		b.WriteByte('\n')
	}
	return b.String()
}

func replaceLine(s string, n int, with string) string {
	lines := strings.SplitAfter(s, "\n")
	lines[n-1] = with + "\n"
	return strings.Join(lines, "")
}

type revertCase struct {
	name string
	// parent is the tree before the reverted commit; root means the reverted
	// commit has no parent.
	parent files
	root   bool
	// commit is the reverted commit's tree, onto the tree it is reverted from.
	commit, onto files
	// want is the result; conflict the conflicting paths instead.
	want     files
	conflict []string
	// gitDiffers: git revert gives another answer on purpose (see the case).
	gitDiffers bool
}

var revertCases = func() []revertCase {
	k := "environments/staging/kustomization.yaml"
	base := files{k: kustomization, "README.md": "readme\n"}
	ten := numbered(10)
	binary := "\x00\x01\x02binary v1"
	return []revertCase{
		{
			name:   "a later bump of another image in the same kustomization survives",
			parent: base,
			commit: merged(base, files{k: bump(kustomization, "b", "v4")}),
			onto:   merged(base, files{k: bump(bump(kustomization, "b", "v4"), "a", "v3")}),
			want:   merged(base, files{k: bump(kustomization, "a", "v3")}),
		},
		{
			name:   "later bumps of the images above and below survive",
			parent: base,
			commit: merged(base, files{k: bump(kustomization, "b", "v4")}),
			onto:   merged(base, files{k: bump(bump(bump(kustomization, "b", "v4"), "a", "v3"), "z", "v1")}),
			want:   merged(base, files{k: bump(bump(kustomization, "a", "v3"), "z", "v1")}),
		},
		{
			name:   "edits above and below the reverted hunk survive",
			parent: files{"f.txt": ten},
			commit: files{"f.txt": replaceLine(ten, 5, "changed 5")},
			onto:   files{"f.txt": replaceLine(replaceLine(replaceLine(ten, 5, "changed 5"), 1, "top"), 10, "bottom")},
			want:   files{"f.txt": replaceLine(replaceLine(ten, 1, "top"), 10, "bottom")},
		},
		{
			name:   "lines inserted above the reverted hunk shift it without conflict",
			parent: files{"f.txt": ten},
			commit: files{"f.txt": replaceLine(ten, 7, "changed 7")},
			onto:   files{"f.txt": "new 1\nnew 2\n" + replaceLine(ten, 7, "changed 7")},
			want:   files{"f.txt": "new 1\nnew 2\n" + ten},
		},
		{
			name:     "a later edit of the same line conflicts",
			parent:   base,
			commit:   merged(base, files{k: bump(kustomization, "b", "v4")}),
			onto:     merged(base, files{k: bump(kustomization, "b", "v5")}),
			conflict: []string{k},
		},
		{
			name:     "a later edit of the adjacent line conflicts, as in git",
			parent:   files{"f.txt": ten},
			commit:   files{"f.txt": replaceLine(ten, 5, "changed 5")},
			onto:     files{"f.txt": replaceLine(replaceLine(ten, 5, "changed 5"), 6, "changed 6")},
			conflict: []string{"f.txt"},
		},
		{
			name:   "a file the commit added is deleted",
			parent: base,
			commit: merged(base, files{"environments/staging/new.yaml": "kind: ConfigMap\n"}),
			onto:   merged(base, files{"environments/staging/new.yaml": "kind: ConfigMap\n", "other.txt": "later\n"}),
			want:   merged(base, files{"other.txt": "later\n"}),
		},
		{
			name:     "a file the commit added and a later commit changed conflicts",
			parent:   base,
			commit:   merged(base, files{"new.yaml": "a: 1\n"}),
			onto:     merged(base, files{"new.yaml": "a: 2\n"}),
			conflict: []string{"new.yaml"},
		},
		{
			name:   "a file the commit deleted is restored",
			parent: merged(base, files{"environments/staging/old.yaml": "kind: Secret\n"}),
			commit: base,
			onto:   merged(base, files{"other.txt": "later\n"}),
			want:   merged(base, files{"environments/staging/old.yaml": "kind: Secret\n", "other.txt": "later\n"}),
		},
		{
			name:     "a file the commit deleted and a later commit re-created differently conflicts",
			parent:   merged(base, files{"old.yaml": "v: 1\n"}),
			commit:   base,
			onto:     merged(base, files{"old.yaml": "v: 2\n"}),
			conflict: []string{"old.yaml"},
		},
		{
			name:   "a file in a nested directory",
			parent: files{"a/b/c/d.yaml": "x: 1\ny: 1\nz: 1\n", "a/b/e.yaml": "e\n"},
			commit: files{"a/b/c/d.yaml": "x: 1\ny: 2\nz: 1\n", "a/b/e.yaml": "e\n"},
			onto:   files{"a/b/c/d.yaml": "x: 1\ny: 2\nz: 1\n", "a/b/e.yaml": "e changed\n"},
			want:   files{"a/b/c/d.yaml": "x: 1\ny: 1\nz: 1\n", "a/b/e.yaml": "e changed\n"},
		},
		{
			name:   "a directory the revert empties disappears",
			parent: files{"keep.txt": "k\n"},
			commit: files{"keep.txt": "k\n", "new/dir/only.yaml": "o\n"},
			onto:   files{"keep.txt": "k\n", "new/dir/only.yaml": "o\n"},
			want:   files{"keep.txt": "k\n"},
		},
		{
			// git follows the rename (rename detection); Sluice never guesses.
			name:       "a file renamed since conflicts",
			parent:     base,
			commit:     merged(base, files{k: bump(kustomization, "b", "v4")}),
			onto:       files{"README.md": "readme\n", "environments/prod/kustomization.yaml": bump(kustomization, "b", "v4")},
			conflict:   []string{k},
			gitDiffers: true,
		},
		{
			name:     "a file deleted since conflicts",
			parent:   base,
			commit:   merged(base, files{k: bump(kustomization, "b", "v4")}),
			onto:     files{"README.md": "readme\n"},
			conflict: []string{k},
		},
		{
			name:   "the last line without a newline is reverted",
			parent: files{"f.txt": "a\nb\nc"},
			commit: files{"f.txt": "a\nb\nC"},
			onto:   files{"f.txt": "A\nb\nC"},
			want:   files{"f.txt": "A\nb\nc"},
		},
		{
			name:   "a removed final newline comes back",
			parent: files{"f.txt": "a\nb\nc\nd\n"},
			commit: files{"f.txt": "a\nb\nc\nd"},
			onto:   files{"f.txt": "A\nb\nc\nd"},
			want:   files{"f.txt": "A\nb\nc\nd\n"},
		},
		{
			name:     "a later edit of a last line without newline conflicts",
			parent:   files{"f.txt": "a\nb\nc"},
			commit:   files{"f.txt": "a\nb\nC"},
			onto:     files{"f.txt": "a\nb\nC\n"},
			conflict: []string{"f.txt"},
		},
		{
			name:   "CRLF line endings are kept",
			parent: files{"w.txt": "one\r\ntwo\r\nthree\r\nfour\r\nfive\r\n"},
			commit: files{"w.txt": "one\r\nTWO\r\nthree\r\nfour\r\nfive\r\n"},
			onto:   files{"w.txt": "one\r\nTWO\r\nthree\r\nfour\r\nFIVE\r\n"},
			want:   files{"w.txt": "one\r\ntwo\r\nthree\r\nfour\r\nFIVE\r\n"},
		},
		{
			name:     "a line ending change on the reverted line conflicts",
			parent:   files{"w.txt": "one\r\ntwo\r\nthree\r\n"},
			commit:   files{"w.txt": "one\r\nTWO\r\nthree\r\n"},
			onto:     files{"w.txt": "one\r\nTWO\nthree\r\n"},
			conflict: []string{"w.txt"},
		},
		{
			name:   "a binary file untouched since is reverted",
			parent: files{"img.bin": binary, "t.txt": "t\n"},
			commit: files{"img.bin": "\x00\x01\x02binary v2", "t.txt": "t\n"},
			onto:   files{"img.bin": "\x00\x01\x02binary v2", "t.txt": "t2\n"},
			want:   files{"img.bin": binary, "t.txt": "t2\n"},
		},
		{
			name:     "a binary file changed since conflicts",
			parent:   files{"img.bin": binary},
			commit:   files{"img.bin": "\x00\x01\x02binary v2\nx\ny\nz\n"},
			onto:     files{"img.bin": "\x00\x01\x02binary v2\nx\ny\nZ\n"},
			conflict: []string{"img.bin"},
		},
		{
			name:   "a mode change is undone",
			parent: files{"run.sh": "echo hi\n"},
			commit: files{"run.sh": execPrefix + "echo hi\n"},
			onto:   files{"run.sh": execPrefix + "echo hi\n", "x": "x\n"},
			want:   files{"run.sh": "echo hi\n", "x": "x\n"},
		},
		{
			name:   "a mode change is undone while a later content edit survives",
			parent: files{"run.sh": "#!/bin/sh\necho hi\n"},
			commit: files{"run.sh": execPrefix + "#!/bin/sh\necho hi\n"},
			onto:   files{"run.sh": execPrefix + "#!/bin/sh\necho hello\n"},
			want:   files{"run.sh": "#!/bin/sh\necho hello\n"},
		},
		{
			name:   "a change already reverted by hand leaves the tree as it is",
			parent: base,
			commit: merged(base, files{k: bump(kustomization, "b", "v4")}),
			onto:   merged(base, files{"x.txt": "x\n"}),
			want:   merged(base, files{"x.txt": "x\n"}),
		},
		{
			name:     "re-creating a file where a later commit put a file as its directory conflicts",
			parent:   files{"a/b.yaml": "b\n", "c": "c\n"},
			commit:   files{"c": "c\n"},
			onto:     files{"a": "now a file\n", "c": "c\n"},
			conflict: []string{"a/b.yaml"},
		},
		{
			name:   "a symlink the commit retargeted is restored",
			parent: files{"link": symlinkPrefix + "a.yaml", "a.yaml": "a\n", "b.yaml": "b\n"},
			commit: files{"link": symlinkPrefix + "b.yaml", "a.yaml": "a\n", "b.yaml": "b\n"},
			onto:   files{"link": symlinkPrefix + "b.yaml", "a.yaml": "a\n", "b.yaml": "b2\n"},
			want:   files{"link": symlinkPrefix + "a.yaml", "a.yaml": "a\n", "b.yaml": "b2\n"},
		},
		{
			name:     "a symlink retargeted since conflicts",
			parent:   files{"link": symlinkPrefix + "a.yaml"},
			commit:   files{"link": symlinkPrefix + "b.yaml"},
			onto:     files{"link": symlinkPrefix + "c.yaml"},
			conflict: []string{"link"},
		},
		{
			name:   "reverting a root commit deletes what it added",
			root:   true,
			commit: files{"a.txt": "a\n", "d/b.txt": "b\n"},
			onto:   files{"a.txt": "a\n", "d/b.txt": "b\n", "c.txt": "c\n"},
			want:   files{"c.txt": "c\n"},
		},
		{
			name:     "every conflicting path is named",
			parent:   files{"x": "1\n", "y": "1\n", "z": "1\n"},
			commit:   files{"x": "2\n", "y": "2\n", "z": "2\n"},
			onto:     files{"x": "3\n", "y": "2\n", "z": "3\n"},
			conflict: []string{"x", "z"},
		},
	}
}()

func TestRevert(t *testing.T) {
	for _, tc := range revertCases {
		t.Run(tc.name, func(t *testing.T) {
			r := memRepo(t)
			var parent plumbing.Hash
			if !tc.root {
				parent = mkCommit(t, r, plumbing.ZeroHash, "parent", tc.parent)
			}
			c := mkCommit(t, r, parent, "the commit", tc.commit)
			onto := mkCommit(t, r, c, "later", tc.onto)
			ontoCommit, err := r.Commit(t.Context(), onto)
			if err != nil {
				t.Fatal(err)
			}

			tree, err := r.Revert(t.Context(), c, ontoCommit.Tree)
			if tc.conflict != nil {
				var ce *ConflictError
				if !errors.As(err, &ce) || !errors.Is(err, ErrConflict) {
					t.Fatalf("Revert() error = %v, want a *ConflictError", err)
				}
				if diff := cmp.Diff(tc.conflict, ce.Paths); diff != "" {
					t.Errorf("conflicting paths (-want +got):\n%s", diff)
				}
				if ce.Commit != c {
					t.Errorf("ConflictError.Commit = %s, want %s", ce.Commit, c)
				}
				return
			}
			if err != nil {
				t.Fatalf("Revert() error = %v", err)
			}
			if diff := cmp.Diff(tc.want, treeFiles(t, r, tree)); diff != "" {
				t.Errorf("reverted tree (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRevertMatchesGit runs `git revert --no-commit` on the same history and
// checks that git and Revert agree: the same files, or both a conflict.
func TestRevertMatchesGit(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the git CLI")
	}
	for _, tc := range revertCases {
		if tc.gitDiffers || tc.root {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			bare, work := newRemote(t)
			work.commitFiles(t, "parent", tc.parent)
			c := work.commitFiles(t, "the commit", tc.commit)
			work.commitFiles(t, "later", tc.onto)
			work.git(t, "push", "--quiet", "origin", "main")

			_, gitErr := work.try(t, "revert", "--no-commit", c)
			gitConflict := gitErr != nil

			r := openRemote(t, bare)
			if err := r.Fetch(t.Context(), "main"); err != nil {
				t.Fatal(err)
			}
			tip, err := r.Tip(t.Context(), "main")
			if err != nil {
				t.Fatal(err)
			}
			onto, err := r.Commit(t.Context(), tip)
			if err != nil {
				t.Fatal(err)
			}
			tree, err := r.Revert(t.Context(), plumbing.NewHash(c), onto.Tree)
			conflict := errors.Is(err, ErrConflict)
			if err != nil && !conflict {
				t.Fatal(err)
			}
			if conflict != gitConflict {
				t.Fatalf("Revert conflict = %v (%v), git revert conflict = %v (%v)", conflict, err, gitConflict, gitErr)
			}
			if conflict {
				return
			}
			if diff := cmp.Diff(work.workFiles(t), treeFiles(t, r, tree)); diff != "" {
				t.Errorf("Revert differs from git revert (-git +Revert):\n%s", diff)
			}
			// Same tree object, byte for byte: entry order, modes, nesting.
			if gitTree := work.git(t, "write-tree"); gitTree != tree.String() {
				t.Errorf("Revert tree = %s, git write-tree = %s", tree, gitTree)
			}
		})
	}
}

func TestMerge3(t *testing.T) {
	tests := []struct {
		name               string
		base, ours, theirs string
		want               string
		conflict           bool
	}{
		{name: "no changes", base: "a\nb\n", ours: "a\nb\n", theirs: "a\nb\n", want: "a\nb\n"},
		{name: "only ours", base: "a\nb\nc\n", ours: "A\nb\nc\n", theirs: "a\nb\nc\n", want: "A\nb\nc\n"},
		{name: "only theirs", base: "a\nb\nc\n", ours: "a\nb\nc\n", theirs: "a\nb\nC\n", want: "a\nb\nC\n"},
		{name: "separated changes both apply", base: "a\nb\nc\n", ours: "A\nb\nc\n", theirs: "a\nb\nC\n", want: "A\nb\nC\n"},
		{name: "identical changes apply once", base: "a\nb\nc\n", ours: "a\nX\nc\n", theirs: "a\nX\nc\n", want: "a\nX\nc\n"},
		{name: "adjacent changes conflict", base: "a\nb\nc\n", ours: "A\nb\nc\n", theirs: "a\nB\nc\n", conflict: true},
		{name: "insertions at the same place conflict", base: "a\nb\n", ours: "a\nx\nb\n", theirs: "a\ny\nb\n", conflict: true},
		{name: "insertion next to a change conflicts", base: "a\nb\nc\n", ours: "a\nx\nb\nc\n", theirs: "a\nB\nc\n", conflict: true},
		{name: "deletion and distant change", base: "a\nb\nc\nd\ne\n", ours: "b\nc\nd\ne\n", theirs: "a\nb\nc\nd\nE\n", want: "b\nc\nd\nE\n"},
		{name: "empty base, both add differently", base: "", ours: "x\n", theirs: "y\n", conflict: true},
		{name: "whole file emptied by one side", base: "a\nb\n", ours: "", theirs: "a\nb\n", want: ""},
		{name: "repeated lines", base: "x\nx\nx\nx\nx\n", ours: "y\nx\nx\nx\nx\n", theirs: "x\nx\nx\nx\nz\n", want: "y\nx\nx\nx\nz\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := merge3([]byte(tt.base), []byte(tt.ours), []byte(tt.theirs))
			if err != nil {
				t.Fatal(err)
			}
			if ok == tt.conflict {
				t.Fatalf("merge3() ok = %v, want conflict = %v (got %q)", ok, tt.conflict, got)
			}
			if ok {
				if diff := cmp.Diff(tt.want, string(got)); diff != "" {
					t.Errorf("merge3() (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestRevertUnknownObjects(t *testing.T) {
	r := memRepo(t)
	c := mkCommit(t, r, plumbing.ZeroHash, "c", files{"a": "a\n"})
	if _, err := r.Revert(t.Context(), plumbing.NewHash(strings.Repeat("ab", 20)), plumbing.ZeroHash); err == nil || errors.Is(err, ErrConflict) {
		t.Errorf("Revert(unknown commit) error = %v, want a plain error", err)
	}
	if _, err := r.Revert(t.Context(), c, plumbing.NewHash(strings.Repeat("cd", 20))); err == nil || errors.Is(err, ErrConflict) {
		t.Errorf("Revert(onto unknown tree) error = %v, want a plain error", err)
	}
}

func TestCommitTree(t *testing.T) {
	r := memRepo(t)
	tree := mkTree(t, r, files{"a": "a\n"})
	root, err := r.CommitTree(t.Context(), tree, plumbing.ZeroHash, "root\n")
	if err != nil {
		t.Fatal(err)
	}
	child, err := r.CommitTree(t.Context(), tree, root, "child\n\nbody\n")
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Commit(t.Context(), child)
	if err != nil {
		t.Fatal(err)
	}
	want := Commit{Hash: child, Tree: tree, Parent: root, Subject: "child", Message: "child\n\nbody\n",
		Author: Signature{Name: "Sluice Test", Email: "sluice@example.com"}}
	if diff := cmp.Diff(want, got, cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "When" }, cmp.Ignore())); diff != "" {
		t.Errorf("Commit() (-want +got):\n%s", diff)
	}
	if _, err := r.CommitTree(t.Context(), plumbing.NewHash(strings.Repeat("ab", 20)), root, "x"); err == nil {
		t.Error("CommitTree(unknown tree) succeeded")
	}
}
