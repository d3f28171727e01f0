package gitrepo

import (
	"bytes"
	"errors"
	"slices"
	"unicode/utf8"

	"github.com/sergi/go-diff/diffmatchpatch"
)

// hunk replaces base lines [start, end) with lines.
type hunk struct {
	start, end int
	lines      []string
}

func (h hunk) equal(o hunk) bool {
	return h.start == o.start && h.end == o.end && slices.Equal(h.lines, o.lines)
}

// touches reports whether two hunks overlap or abut. Like git, changes to
// adjacent lines conflict: with no unchanged line between them there is no
// anchor to tell in which order they apply.
func (h hunk) touches(o hunk) bool { return h.start <= o.end && o.start <= h.end }

// errTooManyLines: the line-to-rune mapping ran out of code points.
var errTooManyLines = errors.New("too many distinct lines to diff")

// merge3 merges the changes base→ours and base→theirs line by line, as
// git's diff3 does: changes separated by at least one unchanged line merge,
// identical changes merge once, anything else conflicts (ok false).
func merge3(base, ours, theirs []byte) (merged []byte, ok bool, err error) {
	b, o, t := splitLines(base), splitLines(ours), splitLines(theirs)
	ho, err := diffHunks(b, o)
	if err != nil {
		return nil, false, err
	}
	ht, err := diffHunks(b, t)
	if err != nil {
		return nil, false, err
	}
	all := slices.Clone(ho)
	for _, h := range ht {
		dup := false
		for _, g := range ho {
			if !g.touches(h) {
				continue
			}
			if !g.equal(h) {
				return nil, false, nil
			}
			dup = true
		}
		if !dup {
			all = append(all, h)
		}
	}
	slices.SortFunc(all, func(x, y hunk) int { return x.start - y.start })
	var out bytes.Buffer
	pos := 0
	for _, h := range all {
		for _, l := range b[pos:h.start] {
			out.WriteString(l)
		}
		for _, l := range h.lines {
			out.WriteString(l)
		}
		pos = h.end
	}
	for _, l := range b[pos:] {
		out.WriteString(l)
	}
	return out.Bytes(), true, nil
}

// splitLines splits after each "\n", keeping it; a last line without one is
// its own line, so "no newline at end of file" is a change like any other.
// "\r\n" stays part of its line.
func splitLines(b []byte) []string {
	var lines []string
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			lines = append(lines, string(b))
			break
		}
		lines = append(lines, string(b[:i+1]))
		b = b[i+1:]
	}
	return lines
}

// diffHunks returns the changes from a to b as hunks over a's lines.
func diffHunks(a, b []string) ([]hunk, error) {
	ids := map[string]rune{}
	toRunes := func(lines []string) ([]rune, error) {
		rs := make([]rune, len(lines))
		for i, l := range lines {
			r, ok := ids[l]
			if !ok {
				var err error
				if r, err = lineRune(len(ids)); err != nil {
					return nil, err
				}
				ids[l] = r
			}
			rs[i] = r
		}
		return rs, nil
	}
	ra, err := toRunes(a)
	if err != nil {
		return nil, err
	}
	rb, err := toRunes(b)
	if err != nil {
		return nil, err
	}
	dmp := diffmatchpatch.New()
	dmp.DiffTimeout = 0 // exact and deterministic, never cut short by a clock
	diffs := dmp.DiffMainRunes(ra, rb, false)

	var hunks []hunk
	var cur *hunk
	i, j := 0, 0 // positions in a and b
	flush := func() {
		if cur != nil {
			hunks = append(hunks, *cur)
			cur = nil
		}
	}
	for _, d := range diffs {
		n := utf8.RuneCountInString(d.Text)
		switch d.Type {
		case diffmatchpatch.DiffEqual:
			flush()
			i += n
			j += n
		case diffmatchpatch.DiffDelete:
			if cur == nil {
				cur = &hunk{start: i, end: i}
			}
			i += n
			cur.end = i
		case diffmatchpatch.DiffInsert:
			if cur == nil {
				cur = &hunk{start: i, end: i}
			}
			cur.lines = append(cur.lines, b[j:j+n]...)
			j += n
		}
	}
	flush()
	return hunks, nil
}

// lineRune maps the n-th distinct line to a valid, non-surrogate code point,
// so the library's string conversions keep every line distinct.
func lineRune(n int) (rune, error) {
	r := rune(n + 1)
	if r >= 0xD800 {
		r += 0x800 // skip the surrogates
	}
	if r > utf8.MaxRune {
		return 0, errTooManyLines
	}
	return r, nil
}

// isBinary is git's test: a NUL byte in the first 8000 bytes.
func isBinary(b []byte) bool {
	return bytes.IndexByte(b[:min(len(b), 8000)], 0) >= 0
}
