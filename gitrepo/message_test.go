package gitrepo

import (
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/google/go-cmp/cmp"
)

func TestRevertMessage(t *testing.T) {
	c := Commit{Hash: plumbing.NewHash("0123456789abcdef0123456789abcdef01234567"), Subject: "bump B to v4"}
	var reason strings.Builder
	reason.WriteString("\nhealth check timed out after 2m0s:\n\n")
	for i := 1; i <= 25; i++ {
		reason.WriteString("  Deployment/b: not ready   \n")
	}
	got := RevertMessage(c, "staging", reason.String())
	want := `Revert "bump B to v4"

This reverts commit 0123456789abcdef0123456789abcdef01234567.

Gate staging rejected it:

    health check timed out after 2m0s:

` + strings.Repeat("      Deployment/b: not ready\n", 18) + `
Sluice-Gate: staging
Sluice-Rejected: 0123456789abcdef0123456789abcdef01234567
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("RevertMessage() (-want +got):\n%s", diff)
	}

	tr := ParseTrailers(got)
	if diff := cmp.Diff(Trailers{{"Sluice-Gate", "staging"}, {"Sluice-Rejected", c.Hash.String()}}, tr); diff != "" {
		t.Errorf("ParseTrailers(RevertMessage()) (-want +got):\n%s", diff)
	}

	short := RevertMessage(c, "staging", "")
	if !strings.Contains(short, "\n\nGate staging rejected it.\n\nSluice-Gate: staging\n") {
		t.Errorf("RevertMessage() with no reason = %q", short)
	}
}

var trailerCases = []struct {
	name string
	msg  string
	want Trailers
}{
	{name: "subject only", msg: "Sluice-Gate: staging\n", want: nil},
	{name: "subject and trailers", msg: "subject\n\nSluice-Gate: staging\nSluice-Rejected: abc\n",
		want: Trailers{{"Sluice-Gate", "staging"}, {"Sluice-Rejected", "abc"}}},
	{name: "only the last paragraph counts", msg: "subject\n\nKey: not a trailer, body has text\nmore body\n\nA: 1\n",
		want: Trailers{{"A", "1"}}},
	{name: "prose in the last paragraph makes it no trailer block", msg: "subject\n\nbody\n\nA: 1\nthis is prose\n", want: nil},
	{name: "continuation lines are folded", msg: "subject\n\nA: first\n  second\n\tthird\nB: 2\n",
		want: Trailers{{"A", "first second third"}, {"B", "2"}}},
	{name: "blank before the colon is allowed", msg: "subject\n\nKey : value\n", want: Trailers{{"Key", "value"}}},
	{name: "a key with a space is not a trailer", msg: "subject\n\nNot A Key: value\n", want: nil},
	{name: "a git-generated trailer lets some prose in", msg: "subject\n\nprose line\nSigned-off-by: A <a@example.com>\n",
		want: Trailers{{"Signed-off-by", "A <a@example.com>"}}},
	{name: "trailing blank lines and CRLF", msg: "subject\r\n\r\nA: 1\r\n\r\n\r\n", want: Trailers{{"A", "1"}}},
	{name: "comment lines are ignored", msg: "subject\n\nA: 1\n# comment\n", want: Trailers{{"A", "1"}}},
	{name: "empty message", msg: "", want: nil},
}

func TestParseTrailers(t *testing.T) {
	for _, tc := range trailerCases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, ParseTrailers(tc.msg)); diff != "" {
				t.Errorf("ParseTrailers(%q) (-want +got):\n%s", tc.msg, diff)
			}
		})
	}
	if got := (Trailers{{"A", "1"}, {"a", "2"}}).Get("A"); got != "1" {
		t.Errorf("Get returns %q, want the first match", got)
	}
}

// TestParseTrailersMatchesGit checks the cases against git interpret-trailers.
func TestParseTrailersMatchesGit(t *testing.T) {
	c := newCLI(t, t.TempDir())
	for _, tc := range trailerCases {
		if strings.Contains(tc.msg, "#") || strings.Contains(tc.msg, "\r") {
			continue // git's comment and CR handling depend on config
		}
		t.Run(tc.name, func(t *testing.T) {
			out, err := gitStdin(t, c, tc.msg, "interpret-trailers", "--parse")
			if err != nil {
				t.Fatal(err)
			}
			var fromGit Trailers
			for _, l := range strings.Split(out, "\n") {
				if l == "" {
					continue
				}
				k, v, _ := strings.Cut(l, ":")
				fromGit = append(fromGit, Trailer{Key: k, Value: strings.TrimSpace(v)})
			}
			if diff := cmp.Diff(fromGit, ParseTrailers(tc.msg)); diff != "" {
				t.Errorf("ParseTrailers vs git interpret-trailers (-git +ours):\n%s", diff)
			}
		})
	}
}

func TestFindReverts(t *testing.T) {
	r := memRepo(t)
	c1 := mkCommit(t, r, plumbing.ZeroHash, "c1", files{"a": "1\n"})
	bad := mkCommit(t, r, c1, "bump B to v4", files{"a": "1\n", "b": "4\n"})
	badCommit, _ := r.Commit(bad)
	x := mkCommit(t, r, bad, "x", files{"a": "1\n", "b": "4\n", "x": "x\n"})
	rev1 := mkCommit(t, r, x, RevertMessage(badCommit, "staging", "failed"), files{"a": "1\n", "x": "x\n"})
	other := mkCommit(t, r, rev1, RevertMessage(Commit{Hash: c1, Subject: "c1"}, "prod", "failed"), files{"x": "x\n"})
	fake := mkCommit(t, r, other, "mentions Sluice-Gate: staging in prose", files{"x": "x\n"})

	tests := []struct {
		name  string
		since plumbing.Hash
		want  map[plumbing.Hash]plumbing.Hash
	}{
		{name: "the whole history", since: plumbing.ZeroHash, want: map[plumbing.Hash]plumbing.Hash{bad: rev1}},
		{name: "since before the revert", since: x, want: map[plumbing.Hash]plumbing.Hash{bad: rev1}},
		{name: "since the revert itself", since: rev1, want: map[plumbing.Hash]plumbing.Hash{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.FindReverts(fake, "staging", tt.since)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("FindReverts() (-want +got):\n%s", diff)
			}
		})
	}
	got, err := r.FindReverts(fake, "prod", plumbing.ZeroHash)
	if err != nil || len(got) != 1 || got[c1] != other {
		t.Errorf("FindReverts(prod) = %v, %v; want c1 → %s", got, err, other)
	}
}
