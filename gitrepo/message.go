package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Trailer keys Sluice writes on its revert commits. They are believed only
// under a valid Sluice-Signature (see RevertOf): anybody can write the others.
const (
	TrailerGate      = "Sluice-Gate"
	TrailerRejected  = "Sluice-Rejected"
	TrailerSignature = "Sluice-Signature"
)

// maxReasonLines is how much of a failure a revert commit message quotes;
// the note on the rejected commit keeps all of it.
const maxReasonLines = 20

// RevertMessage is the message of the commit that reverts c because gate
// rejected it:
//
//	Revert "<original subject>"
//
//	This reverts commit <full sha>.
//
//	Gate <gate> rejected it:
//
//	    <first 20 lines of reason>
//
//	Sluice-Gate: <gate>
//	Sluice-Rejected: <full sha>
//
// With an empty reason the quoted block is left out ("Gate <gate> rejected it.").
// VerdictKey.SignRevert adds the Sluice-Signature trailer once the revert's
// parent and tree are known. The first three lines are what `git revert`
// writes, so the revert is recognised as one without the key too.
func RevertMessage(c Commit, gate, reason string) string {
	gate = oneLine(gate)
	var b strings.Builder
	fmt.Fprintf(&b, "Revert \"%s\"\n\nThis reverts commit %s.\n\n", oneLine(c.Subject), c.Hash)
	lines := reasonLines(reason)
	if len(lines) == 0 {
		fmt.Fprintf(&b, "Gate %s rejected it.\n\n", gate)
	} else {
		fmt.Fprintf(&b, "Gate %s rejected it:\n\n", gate)
		for _, l := range lines {
			if l != "" {
				b.WriteString("    ")
				b.WriteString(l)
			}
			b.WriteByte('\n')
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "%s: %s\n%s: %s\n", TrailerGate, gate, TrailerRejected, c.Hash)
	return b.String()
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\r", " ")), " ")
}

// reasonLines returns at most maxReasonLines lines of reason, without
// leading or trailing blank lines or trailing whitespace.
func reasonLines(reason string) []string {
	var lines []string
	for _, l := range strings.Split(reason, "\n") {
		lines = append(lines, strings.TrimRight(l, " \t\r"))
	}
	for len(lines) > 0 && lines[0] == "" {
		lines = lines[1:]
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines[:min(len(lines), maxReasonLines)]
}

// Trailer is one "Key: value" line of a commit message's trailer block.
type Trailer struct {
	Key, Value string
}

// Trailers are a commit message's trailers, in order.
type Trailers []Trailer

// Get returns the value of the first trailer with key (case-insensitive),
// "" if there is none.
func (ts Trailers) Get(key string) string {
	for _, t := range ts {
		if strings.EqualFold(t.Key, key) {
			return t.Value
		}
	}
	return ""
}

// gitGeneratedPrefixes make a mostly-prose last paragraph count as trailers, as in git.
var gitGeneratedPrefixes = []string{"Signed-off-by: ", "(cherry picked from commit "}

// ParseTrailers returns the trailers of a commit message by git's rules
// (git interpret-trailers --parse): the last paragraph, if it is not the
// only one, is a trailer block when every line in it is a "Key: value"
// trailer or a continuation line (starting with whitespace, folded into the
// previous value with one space), or when at least a quarter of its lines
// are trailers and one is git-generated (Signed-off-by, cherry picked from);
// non-trailer lines are then skipped. Comment lines (#) are ignored.
func ParseTrailers(message string) Trailers {
	var lines []string
	for _, l := range strings.Split(message, "\n") {
		l = strings.TrimSuffix(l, "\r")
		if strings.HasPrefix(l, "#") {
			continue
		}
		lines = append(lines, l)
	}
	isBlank := func(l string) bool { return strings.TrimSpace(l) == "" }
	end := len(lines)
	for end > 0 && isBlank(lines[end-1]) {
		end--
	}
	start := end
	for start > 0 && !isBlank(lines[start-1]) {
		start--
	}
	// The first paragraph is the subject, never a trailer block.
	first := 0
	for first < len(lines) && isBlank(lines[first]) {
		first++
	}
	if start <= first || start == end {
		return nil
	}
	block := lines[start:end]

	var out Trailers
	trailerLines, otherLines := 0, 0
	generated := false
	inTrailer := false // whether a continuation line extends the last trailer
	for _, l := range block {
		if l[0] == ' ' || l[0] == '\t' {
			if inTrailer {
				out[len(out)-1].Value = strings.TrimSpace(out[len(out)-1].Value + " " + strings.TrimSpace(l))
				continue
			}
			otherLines++
			continue
		}
		key, value, ok := splitTrailer(l)
		if !ok {
			otherLines++
			inTrailer = false
			continue
		}
		trailerLines++
		inTrailer = true
		for _, p := range gitGeneratedPrefixes {
			if strings.HasPrefix(l, p) {
				generated = true
			}
		}
		out = append(out, Trailer{Key: key, Value: value})
	}
	if trailerLines == 0 {
		return nil
	}
	if otherLines > 0 && !(generated && trailerLines*3 >= otherLines) {
		return nil
	}
	return out
}

// splitTrailer parses "Key: value" (git also allows blanks before the colon).
func splitTrailer(l string) (key, value string, ok bool) {
	if strings.HasPrefix(l, "(cherry picked from commit ") {
		return "(cherry picked from commit", strings.TrimSuffix(strings.TrimPrefix(l, "(cherry picked from commit "), ")"), true
	}
	i := strings.IndexByte(l, ':')
	if i <= 0 {
		return "", "", false
	}
	key = strings.TrimRight(l[:i], " \t")
	if key == "" {
		return "", "", false
	}
	for _, c := range key {
		if !(c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return "", "", false
		}
	}
	return key, strings.TrimSpace(l[i+1:]), true
}

// Revert is a commit recognised as undoing another.
type Revert struct {
	Commit   Commit
	Rejected plumbing.Hash // the commit it undoes
	// Gate is the gate that wrote and signed it; "" when it was recognised
	// by git's message and its tree (a person's `git revert`).
	Gate string
}

// RevertOf reports whether c reverts another commit. It believes two kinds
// of evidence and nothing else:
//
//   - Sluice's own revert: a Sluice-Signature trailer that key made over
//     c's parent, tree and the rest of its message; Sluice-Gate and
//     Sluice-Rejected then say which gate rejected which commit.
//   - git's revert: the message starts as `git revert` writes it,
//     `Revert "<subject>"`, a blank line, `This reverts commit <sha>.` (or
//     `…, reversing` for a merge), the subject is the named commit's, and
//     c's tree is what reverting that commit on c's parent gives (Revert),
//     so the commit really undoes it and changes nothing else.
//
// A line quoted in a longer message (a squash merge's), or trailers
// someone else wrote, prove nothing.
func (r *Repository) RevertOf(ctx context.Context, c Commit, key *VerdictKey) (Revert, bool, error) {
	if key.verifyRevert(c) {
		rejected, ok := parseHash(c.Trailers.Get(TrailerRejected))
		gate := c.Trailers.Get(TrailerGate)
		if ok && gate != "" {
			return Revert{Commit: c, Rejected: rejected, Gate: gate}, true, nil
		}
	}
	rejected, ok := gitRevertTarget(c.Message)
	if !ok || c.Parent.IsZero() {
		return Revert{}, false, nil
	}
	if err := r.mu.Lock(ctx); err != nil {
		return Revert{}, false, err
	}
	defer r.mu.Unlock()
	orig, err := object.GetCommit(r.st, rejected)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return Revert{}, false, nil
	}
	if err != nil {
		return Revert{}, false, fmt.Errorf("revert of %s: %w", short(rejected), err)
	}
	if subject := toCommit(orig).Subject; oneLine(c.Subject) != oneLine(`Revert "`+subject+`"`) {
		return Revert{}, false, nil
	}
	parent, err := object.GetCommit(r.st, c.Parent)
	if err != nil {
		return Revert{}, false, fmt.Errorf("revert of %s: parent: %w", short(rejected), err)
	}
	tree, err := r.revertLocked(ctx, rejected, parent.TreeHash)
	if errors.Is(err, ErrConflict) {
		return Revert{}, false, nil
	}
	if err != nil {
		return Revert{}, false, fmt.Errorf("revert of %s: %w", short(rejected), err)
	}
	if tree != c.Tree {
		return Revert{}, false, nil
	}
	return Revert{Commit: c, Rejected: rejected}, true, nil
}

// gitRevertTarget reads the commit a message in `git revert`'s own form
// names: the subject line, one blank line, then "This reverts commit
// <sha>." or "This reverts commit <sha>, reversing" as the first line of
// the body.
func gitRevertTarget(msg string) (plumbing.Hash, bool) {
	lines := strings.SplitN(msg, "\n", 4)
	if len(lines) < 3 || !strings.HasPrefix(lines[0], `Revert "`) || strings.TrimSpace(lines[1]) != "" {
		return plumbing.ZeroHash, false
	}
	rest, ok := strings.CutPrefix(strings.TrimRight(lines[2], " \r"), "This reverts commit ")
	if !ok || len(rest) < 40 {
		return plumbing.ZeroHash, false
	}
	if tail := rest[40:]; tail != "." && tail != ", reversing" {
		return plumbing.ZeroHash, false
	}
	return parseHash(rest[:40])
}

// parseHash accepts exactly 40 lowercase hex digits.
func parseHash(s string) (plumbing.Hash, bool) {
	if len(s) != 40 {
		return plumbing.ZeroHash, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return plumbing.ZeroHash, false
		}
	}
	return plumbing.NewHash(s), true
}
