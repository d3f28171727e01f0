package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// lines returns n distinct lines, line i replaced by edits[i] where given.
func lines(n int, edits map[int]string) string {
	var b strings.Builder
	for i := range n {
		if e, ok := edits[i]; ok {
			b.WriteString(e + "\n")
			continue
		}
		fmt.Fprintf(&b, "key%d: value %d\n", i, i)
	}
	return b.String()
}

// TestRevertLimits: a file both sides changed is merged line by line only
// within RevertOptions; past them the revert is a conflict naming the file
// and the limit (the gate stops, a person reverts by hand), never an error
// that looks like an outage and is retried forever.
func TestRevertLimits(t *testing.T) {
	const p = "environments/x/big.yaml"
	tests := []struct {
		name                 string
		opts                 RevertOptions
		n                    int // lines of the file
		parent, commit, onto map[int]string
		want                 string // in the *RevertLimitError; "" for a clean revert
	}{
		{
			name: "a file over the default line limit conflicts",
			n:    12_000, commit: map[int]string{10: "changed by the commit"}, onto: map[int]string{11_000: "changed later"},
			want: p + ": too large to revert automatically (12000 lines, limit 10000)",
		},
		{
			name: "a file over a configured byte limit conflicts before it is read",
			opts: RevertOptions{MaxFileBytes: 10_000},
			n:    1_000, commit: map[int]string{10: "changed by the commit"}, onto: map[int]string{900: "changed later"},
			want: "too large to revert automatically (17786 bytes, limit 10000)",
		},
		{
			name: "more distinct lines than the diff can number conflict on the byte limit",
			n:    1_200_000, commit: map[int]string{10: "changed by the commit"}, onto: map[int]string{1_100_000: "changed later"},
			want: "bytes, limit 4194304)",
		},
		{
			name: "a raised line limit lets the same file merge",
			opts: RevertOptions{MaxFileLines: 20_000},
			n:    12_000, commit: map[int]string{10: "changed by the commit"}, onto: map[int]string{11_000: "changed later"},
		},
		{
			name: "a large file nothing changed after the commit reverts without a merge",
			n:    12_000, commit: map[int]string{10: "changed by the commit"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Open(context.Background(), Options{URL: "file:///nonexistent", Revert: tt.opts})
			if err != nil {
				t.Fatal(err)
			}
			parent := mkCommit(t, r, plumbing.ZeroHash, "parent", files{p: lines(tt.n, tt.parent)})
			c := mkCommit(t, r, parent, "the commit", files{p: lines(tt.n, tt.commit)})
			later := map[int]string{}
			for k, v := range tt.commit {
				later[k] = v
			}
			for k, v := range tt.onto {
				later[k] = v
			}
			onto := mkTree(t, r, files{p: lines(tt.n, later)})

			tree, err := r.Revert(t.Context(), c, onto)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Revert() error = %v", err)
				}
				want := map[int]string{}
				for k, v := range tt.onto {
					want[k] = v
				}
				if got := treeFiles(t, r, tree)[p]; got != lines(tt.n, want) {
					t.Errorf("reverted %s differs from the file without the commit's change", p)
				}
				return
			}
			var le *RevertLimitError
			if !errors.As(err, &le) || !errors.Is(err, ErrConflict) {
				t.Fatalf("Revert() error = %v, want a *RevertLimitError that is a conflict", err)
			}
			if le.Path != p || le.Commit != c || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Revert() error = %v (path %q), want one naming %s and %q", err, le.Path, p, tt.want)
			}
		})
	}
}
