package gitrepo

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestOverlayPutsChangesOnTopFileByFile(t *testing.T) {
	base := files{"env/a.yaml": "a1\n", "env/b.yaml": "b1\n", "env/c.yaml": "c1\n"}
	tests := []struct {
		name          string
		theirs, onto  files
		want          files
		wantConflicts []string
	}{
		{
			name:   "a change onto a target that moved elsewhere",
			theirs: merged(base, files{"env/a.yaml": "a2\n"}),
			onto:   merged(base, files{"env/b.yaml": "b0\n"}),
			want:   files{"env/a.yaml": "a2\n", "env/b.yaml": "b0\n", "env/c.yaml": "c1\n"},
		},
		{
			name:   "an added and a removed file",
			theirs: files{"env/a.yaml": "a1\n", "env/b.yaml": "b1\n", "env/d.yaml": "d1\n"},
			onto:   base,
			want:   files{"env/a.yaml": "a1\n", "env/b.yaml": "b1\n", "env/d.yaml": "d1\n"},
		},
		{
			name:   "the same change on both sides is no conflict",
			theirs: merged(base, files{"env/a.yaml": "a2\n"}),
			onto:   merged(base, files{"env/a.yaml": "a2\n"}),
			want:   merged(base, files{"env/a.yaml": "a2\n"}),
		},
		{
			name:          "a file both changed, even on other lines, is a conflict naming it",
			theirs:        merged(base, files{"env/a.yaml": "a1\nmore\n", "env/c.yaml": "c2\n"}),
			onto:          merged(base, files{"env/a.yaml": "a0\na1\n"}),
			wantConflicts: []string{"env/a.yaml"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := memRepo(t)
			got, err := r.Overlay(t.Context(), mkTree(t, r, base), mkTree(t, r, tt.theirs), mkTree(t, r, tt.onto))
			if tt.wantConflicts != nil {
				var ce *OverlayConflictError
				if !errors.As(err, &ce) || !errors.Is(err, ErrConflict) {
					t.Fatalf("err %v, want an *OverlayConflictError", err)
				}
				if diff := cmp.Diff(tt.wantConflicts, ce.Paths); diff != "" {
					t.Errorf("conflicts (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, treeFiles(t, r, got)); diff != "" {
				t.Errorf("tree (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReplaceDirSetsExactlyTheWorkingTreesFiles(t *testing.T) {
	r := memRepo(t)
	tree := mkTree(t, r, files{"env/a.yaml": "a1\n", "env/old.yaml": "x\n", "services/s.yaml": "s\n"})
	got, err := r.ReplaceDir(t.Context(), tree, "env", map[string]File{"a.yaml": {Data: []byte("a2\n")}, "sub/b.yaml": {Data: []byte("b\n")}})
	if err != nil {
		t.Fatal(err)
	}
	want := files{"env/a.yaml": "a2\n", "env/sub/b.yaml": "b\n", "services/s.yaml": "s\n"}
	if diff := cmp.Diff(want, treeFiles(t, r, got)); diff != "" {
		t.Errorf("tree (-want +got):\n%s", diff)
	}
	if _, err := r.ReplaceDir(t.Context(), tree, "env", map[string]File{"../x": {}}); err == nil {
		t.Error("a path with .. was written")
	}
}
