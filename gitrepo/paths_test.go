package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-cmp/cmp"
)

// TestChangedPaths: every entry that differs is reported, directories only
// when they appear, disappear or change kind, each with everything under
// them; directories that merely hold a change are not.
func TestChangedPaths(t *testing.T) {
	base := files{
		"README.md":                         "# demo\n",
		"env/staging/kustomization.yaml":    "resources:\n- ../../svc\n",
		"svc/kustomization.yaml":            "resources:\n- deploy.yaml\n",
		"svc/deploy.yaml":                   "kind: Deployment\n",
		"svc/run.sh":                        "echo\n",
		"svc/current":                       symlinkPrefix + "deploy.yaml",
		"docs/a/b.md":                       "b\n",
		"docs/c.md":                         "c\n",
		"Svc/kustomization.yaml":            "resources: []\n",
		"env/prod/kustomization.yaml":       "resources:\n- ../../svc\n",
		"env/prod/patches/replicas.yaml":    "spec: {replicas: 3}\n",
		"env/prod/patches/more/deeper.yaml": "x: 1\n",
	}
	tests := []struct {
		name   string
		change files // "" deletes
		want   []string
	}{
		{"the same tree changes nothing", files{}, nil},
		{"a modified file, not its directories", files{"svc/deploy.yaml": "kind: Deployment\nx: 1\n"}, []string{"svc/deploy.yaml"}},
		{"an added file beside others", files{"svc/NOTES.md": "n\n"}, []string{"svc/NOTES.md"}},
		{"a removed file", files{"docs/c.md": ""}, []string{"docs/c.md"}},
		{"a new kustomization.yml beside a kustomization.yaml", files{"svc/kustomization.yml": "x: 1\n"}, []string{"svc/kustomization.yml"}},
		{"a file only differing in case is another path", files{"svc/Deploy.yaml": "kind: Deployment\n"}, []string{"svc/Deploy.yaml"}},
		{"a new directory is reported with what it holds", files{"svc/extra/a/x.yaml": "x\n"}, []string{"svc/extra", "svc/extra/a", "svc/extra/a/x.yaml"}},
		{"a removed directory is reported with what it held", files{"docs/a/b.md": "", "docs/c.md": ""}, []string{"docs", "docs/a", "docs/a/b.md", "docs/c.md"}},
		{"a mode change", files{"svc/run.sh": execPrefix + "echo\n"}, []string{"svc/run.sh"}},
		{"a retargeted symlink", files{"svc/current": symlinkPrefix + "kustomization.yaml"}, []string{"svc/current"}},
		{"a file replaced by a symlink to the same content", files{"svc/deploy.yaml": symlinkPrefix + "kind: Deployment\n"}, []string{"svc/deploy.yaml"}},
		{"a rename is a removal and an addition", files{"env/prod/patches/replicas.yaml": "", "env/prod/patches/replica.yaml": "spec: {replicas: 3}\n"},
			[]string{"env/prod/patches/replica.yaml", "env/prod/patches/replicas.yaml"}},
		{"a directory replaced by a file", files{"env/prod/patches/replicas.yaml": "", "env/prod/patches/more/deeper.yaml": "", "env/prod/patches": "now a file\n"},
			[]string{"env/prod/patches", "env/prod/patches/more", "env/prod/patches/more/deeper.yaml", "env/prod/patches/replicas.yaml"}},
		{"a directory replaced by a symlink", files{"docs/a/b.md": "", "docs/c.md": "", "docs": symlinkPrefix + "svc"},
			[]string{"docs", "docs/a", "docs/a/b.md", "docs/c.md"}},
	}
	r := memRepo(t)
	a := mkTree(t, r, base)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mkTree(t, r, merged(base, tt.change))
			got, err := r.ChangedPaths(t.Context(), a, b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ChangedPaths (-want +got):\n%s", diff)
			}
			back, err := r.ChangedPaths(t.Context(), b, a)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, back); diff != "" {
				t.Errorf("ChangedPaths the other way (-want +got):\n%s", diff)
			}
		})
	}
}

// TestChangedPathsSubmodules: a submodule's commit, or a directory turned
// submodule, is a changed path; a submodule is never entered.
func TestChangedPathsSubmodules(t *testing.T) {
	r := memRepo(t)
	sub := func(hex string) *object.TreeEntry {
		return &object.TreeEntry{Mode: filemode.Submodule, Hash: plumbing.NewHash(strings.Repeat(hex, 20))}
	}
	base := mkTree(t, r, files{"a.yaml": "a\n", "vendor/x.yaml": "x\n"})
	update := func(tree plumbing.Hash, updates map[string]*object.TreeEntry) plumbing.Hash {
		t.Helper()
		r.mu.Lock(context.Background())
		defer r.mu.Unlock()
		out, _, err := r.updateTree(tree, updates)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	withSub := update(base, map[string]*object.TreeEntry{"lib": sub("12")})
	tests := []struct {
		name string
		a, b plumbing.Hash
		want []string
	}{
		{"a submodule added", base, withSub, []string{"lib"}},
		{"a submodule moved to another commit", withSub, update(withSub, map[string]*object.TreeEntry{"lib": sub("34")}), []string{"lib"}},
		{"a directory turned submodule", base, update(base, map[string]*object.TreeEntry{"vendor/x.yaml": nil, "vendor": sub("56")}), []string{"vendor", "vendor/x.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.ChangedPaths(t.Context(), tt.a, tt.b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ChangedPaths (-want +got):\n%s", diff)
			}
		})
	}
}

// TestChangedPathsMatchesGit: the files ChangedPaths reports are the ones
// git diff-tree reports, for commits made by git itself.
func TestChangedPathsMatchesGit(t *testing.T) {
	bare, work := newRemote(t)
	before := files{
		"README.md":              "# demo\n",
		"svc/kustomization.yaml": "resources:\n- deploy.yaml\n",
		"svc/deploy.yaml":        "kind: Deployment\n",
		"svc/link":               symlinkPrefix + "deploy.yaml",
		"svc/tool.sh":            "echo\n",
		"docs/a/b.md":            "b\n",
	}
	after := merged(before, files{
		"README.md":      "# demo, changed\n",
		"svc/link":       symlinkPrefix + "kustomization.yaml",
		"svc/tool.sh":    execPrefix + "echo\n",
		"docs/a/b.md":    "",
		"docs/a":         "a file now\n",
		"new/dir/x.yaml": "x\n",
	})
	c1 := work.commitFiles(t, "before", before)
	c2 := work.commitFiles(t, "after", after)
	work.git(t, "push", "--quiet", "origin", "main")
	r := openRemote(t, bare)
	if err := r.Fetch(t.Context(), "main"); err != nil {
		t.Fatal(err)
	}
	tree := func(rev string) plumbing.Hash {
		c, err := r.Commit(t.Context(), plumbing.NewHash(rev))
		if err != nil {
			t.Fatal(err)
		}
		return c.Tree
	}
	got, err := r.ChangedPaths(t.Context(), tree(c1), tree(c2))
	if err != nil {
		t.Fatal(err)
	}
	// git reports files; ChangedPaths also the directories that came or went.
	var gotFiles []string
	for _, p := range got {
		if _, ok := before[p]; ok {
			gotFiles = append(gotFiles, p)
		} else if _, ok := after[p]; ok {
			gotFiles = append(gotFiles, p)
		}
	}
	want := strings.Fields(work.git(t, "diff-tree", "-r", "--no-renames", "--name-only", c1, c2))
	if diff := cmp.Diff(want, gotFiles); diff != "" {
		t.Errorf("files ChangedPaths reports, against git diff-tree (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"README.md", "docs/a", "docs/a/b.md", "new", "new/dir", "new/dir/x.yaml", "svc/link", "svc/tool.sh"}, got); diff != "" {
		t.Errorf("ChangedPaths (-want +got):\n%s", diff)
	}
}

// TestChangedPathsBounds: a comparison over its budget, a cancelled
// context and a tree git fsck refuses are errors, never a partial list.
func TestChangedPathsBounds(t *testing.T) {
	r := memRepo(t)
	small := mkTree(t, r, files{"a.yaml": "a\n"})
	r.mu.Lock(context.Background())
	blob, _ := writeBlob(r.st, []byte("x\n"))
	r.mu.Unlock()
	entries := []rawEntry{}
	for i := range maxComparedEntries + 1 {
		entries = append(entries, rawEntry{"100644", fmt.Sprintf("f%06d", i), blob})
	}
	big := writeRawTree(t, r, entries)
	bigRoot := writeRawTree(t, r, []rawEntry{{"40000", "wide", big}})
	if _, err := r.ChangedPaths(t.Context(), small, bigRoot); err == nil || !strings.Contains(err.Error(), "more than 100000 tree entries") {
		t.Errorf("over the budget: err = %v, want one naming the limit", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := r.ChangedPaths(ctx, small, bigRoot); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v, want context.Canceled", err)
	}

	hostile := writeRawTree(t, r, []rawEntry{{"100644", "a.yaml", blob}, {"100644", "a.yaml", blob}})
	_, err := r.ChangedPaths(t.Context(), small, hostile)
	var te *TreeError
	if !errors.As(err, &te) || te.Path != "a.yaml" {
		t.Errorf("a duplicate entry: err = %v, want a *TreeError naming a.yaml", err)
	}
}
