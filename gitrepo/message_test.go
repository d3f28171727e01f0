package gitrepo

import (
	"fmt"
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

// testKey is a verdict key for tests.
func testKey(t testing.TB, fill byte) *VerdictKey {
	t.Helper()
	k, err := NewVerdictKey([]byte(strings.Repeat(string(fill), MinVerdictKeyLen)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRevertOf(t *testing.T) {
	r := memRepo(t)
	key := testKey(t, 'k')
	c1 := mkCommit(t, r, plumbing.ZeroHash, "c1", files{"a": "1\n2\n3\n4\n", "b": "3\n"})
	bad := mkCommit(t, r, c1, "bump B to v4", files{"a": "1\n2\n3\n4\n", "b": "4\n"})
	badCommit, _ := r.Commit(t.Context(), bad)
	later := mkCommit(t, r, bad, "x", files{"a": "1\n2\n3\nfour\n", "b": "4\n", "x": "x\n"})
	undone := files{"a": "1\n2\n3\nfour\n", "b": "3\n", "x": "x\n"}

	gitMsg := fmt.Sprintf("Revert \"bump B to v4\"\n\nThis reverts commit %s.\n", bad)
	sluiceMsg := RevertMessage(badCommit, "staging", "failed")
	undoneTree := mkTree(t, r, undone)
	signed := key.SignRevert(sluiceMsg, later, undoneTree)

	tests := []struct {
		name     string
		msg      string
		tree     files
		key      *VerdictKey
		want     bool
		wantGate string
	}{
		{name: "Sluice's signed revert names its gate", msg: signed, tree: undone, key: key, want: true, wantGate: "staging"},
		{name: "Sluice's revert under another key is still git's exact revert, of no gate", msg: signed, tree: undone, key: testKey(t, 'o'), want: true},
		{name: "a person's git revert", msg: gitMsg, tree: undone, key: key, want: true},
		{name: "git revert of a merge names the parent", msg: fmt.Sprintf("Revert \"bump B to v4\"\n\nThis reverts commit %s, reversing\nchanges made to %s.\n", bad, c1), tree: undone, key: key, want: true},
		{name: "git revert with an explanation below", msg: gitMsg + "\nIt broke A.\n", tree: undone, key: key, want: true},
		{name: "a signed message on a commit that does more is nobody's revert", msg: signed, tree: merged(undone, files{"y": "y\n"}), key: key},
		{name: "git's message on a commit that does more", msg: gitMsg, tree: merged(undone, files{"y": "y\n"}), key: key},
		{name: "git's message on a commit that does not undo it", msg: gitMsg, tree: merged(undone, files{"b": "5\n"}), key: key},
		{name: "git's message with another subject", msg: strings.Replace(gitMsg, "bump B", "bump C", 1), tree: undone, key: key},
		{name: "a squash merge quoting the line", msg: "Merge feature (#12)\n\n* bump C\n\nRevert \"bump B to v4\"\n\nThis reverts commit " + bad.String() + ".\n", tree: undone, key: key},
		{name: "the line alone, without git's subject", msg: "undo\n\nThis reverts commit " + bad.String() + ".\n", tree: undone, key: key},
		{name: "a person's Sluice trailers", msg: "tidy\n\nSluice-Gate: staging\nSluice-Rejected: " + bad.String() + "\n", tree: undone, key: key},
		{name: "a person's Sluice trailers with a made-up signature", msg: sluiceMsg + "Sluice-Signature: hmac-sha256:" + strings.Repeat("0", 64) + "\n", tree: merged(undone, files{"y": "y\n"}), key: key},
		{name: "git's message naming an unknown commit", msg: strings.ReplaceAll(gitMsg, bad.String(), strings.Repeat("e", 40)), tree: undone, key: key},
		{name: "no key: only git's revert counts", msg: signed, tree: undone, key: nil, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := mkCommit(t, r, later, tt.msg, tt.tree)
			c, err := r.Commit(t.Context(), h)
			if err != nil {
				t.Fatal(err)
			}
			got, ok, err := r.RevertOf(t.Context(), c, tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.want || (ok && (got.Rejected != bad || got.Gate != tt.wantGate || got.Commit.Hash != h)) {
				t.Errorf("RevertOf() = %+v, %v; want %v, rejecting %s, gate %q", got, ok, tt.want, short(bad), tt.wantGate)
			}
		})
	}
}
