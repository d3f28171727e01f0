package gitrepo

import (
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// Trailer keys Sluice writes on its revert commits.
const (
	TrailerGate     = "Sluice-Gate"
	TrailerRejected = "Sluice-Rejected"
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

// FindReverts returns, for the first-parent commits from tip back to (not
// including) since and everything reachable from since — ZeroHash for the
// whole first-parent history — the revert commits gate wrote: rejected
// commit → revert commit, read from the Sluice-Gate and Sluice-Rejected
// trailers. If a commit was reverted more than once, the newest revert is kept.
// It is how Sluice never reverts the same commit twice.
func (r *Repository) FindReverts(tip plumbing.Hash, gate string, since plumbing.Hash) (map[plumbing.Hash]plumbing.Hash, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	commits, err := r.firstParentRange(tip, since)
	if err != nil {
		return nil, fmt.Errorf("find reverts: %w", err)
	}
	out := map[plumbing.Hash]plumbing.Hash{}
	for _, c := range commits { // newest first
		if c.Trailers.Get(TrailerGate) != gate {
			continue
		}
		rejected, ok := parseHash(c.Trailers.Get(TrailerRejected))
		if !ok {
			continue
		}
		if _, seen := out[rejected]; !seen {
			out[rejected] = c.Hash
		}
	}
	return out, nil
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
