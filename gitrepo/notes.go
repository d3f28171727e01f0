package gitrepo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Verdicts a Record carries.
const (
	VerdictPassed = "passed" // the candidate was good
	VerdictFailed = "failed" // the commit's fault
	VerdictError  = "error"  // the infrastructure's fault
)

// maxNotesPushAttempts bounds how often PushNotes re-fetches and re-applies
// after another writer moved the remote notes ref.
const maxNotesPushAttempts = 5

// Note is the verdict note on one commit: one Record per gate that tested it.
type Note struct {
	Records []Record
}

// Record is one gate's verdict on one commit.
type Record struct {
	Gate    string
	Verdict string // VerdictPassed, VerdictFailed or VerdictError
	// Candidate is the tree that was tested.
	Candidate plumbing.Hash
	// Digest identifies the rendered objects.
	Digest string
	// Reverted are the pending rejected commits reverted out of the candidate.
	Reverted []plumbing.Hash
	// Reason says why; several lines are fine.
	Reason string
	// RevertCommit is set when Sluice pushed a revert of this commit.
	RevertCommit plumbing.Hash
	// Skipped: passed without a run because the render was unchanged.
	Skipped   bool
	Started   time.Time
	Durations map[string]time.Duration // e.g. render, apply, health, tests, total
	Attempts  int
	// Signature is Sluice's signature over the other fields and the commit
	// the record is attached to (VerdictKey.SignRecord); a record without a
	// valid one is not Sluice's and is never believed.
	Signature string
}

// Get returns the record of gate.
func (n *Note) Get(gate string) (Record, bool) {
	for _, r := range n.Records {
		if r.Gate == gate {
			return r, true
		}
	}
	return Record{}, false
}

// Set replaces the record of rec.Gate, or adds it keeping records sorted by gate.
func (n *Note) Set(rec Record) {
	for i := range n.Records {
		if n.Records[i].Gate == rec.Gate {
			n.Records[i] = rec
			return
		}
	}
	i := sort.Search(len(n.Records), func(i int) bool { return n.Records[i].Gate > rec.Gate })
	n.Records = slices.Insert(n.Records, i, rec)
}

// Note keys, in the order EncodeNote writes them.
const (
	keyGate         = "gate"
	keyVerdict      = "verdict"
	keyCandidate    = "candidate"
	keyDigest       = "digest"
	keyReverted     = "reverted"
	keyRevertCommit = "revert-commit"
	keySkipped      = "skipped"
	keyStarted      = "started"
	keyAttempts     = "attempts"
	keyDurations    = "durations"
	keyReason       = "reason"
	keySignature    = "signature"
)

const reasonIndent = "    "

// EncodeNote renders n as text for `git notes show` and `git log --notes`:
// one block per gate (sorted by gate), blocks separated by a blank line, each
// a list of "key: value" lines; the reason follows a "reason:" line, each of
// its lines indented by four spaces (empty lines stay empty, so the text has
// no trailing blanks and survives git's own clean-up). Zero values are left
// out, and so are the trailing newlines of Reason. Gate and Digest must be
// single-line. The output is deterministic.
func EncodeNote(n Note) []byte {
	recs := slices.Clone(n.Records)
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Gate < recs[j].Gate })
	var b bytes.Buffer
	for i, r := range recs {
		if i > 0 {
			b.WriteByte('\n')
		}
		kv := func(k, v string) { fmt.Fprintf(&b, "%s: %s\n", k, v) }
		kv(keyGate, r.Gate)
		kv(keyVerdict, r.Verdict)
		if !r.Candidate.IsZero() {
			kv(keyCandidate, r.Candidate.String())
		}
		if r.Digest != "" {
			kv(keyDigest, r.Digest)
		}
		if len(r.Reverted) > 0 {
			hs := make([]string, len(r.Reverted))
			for i, h := range r.Reverted {
				hs[i] = h.String()
			}
			kv(keyReverted, strings.Join(hs, " "))
		}
		if !r.RevertCommit.IsZero() {
			kv(keyRevertCommit, r.RevertCommit.String())
		}
		if r.Skipped {
			kv(keySkipped, "true")
		}
		if !r.Started.IsZero() {
			kv(keyStarted, r.Started.UTC().Format(time.RFC3339Nano))
		}
		if r.Attempts != 0 {
			kv(keyAttempts, strconv.Itoa(r.Attempts))
		}
		if len(r.Durations) > 0 {
			var ds []string
			for _, k := range sortedKeys(r.Durations) {
				ds = append(ds, k+"="+r.Durations[k].String())
			}
			kv(keyDurations, strings.Join(ds, " "))
		}
		if reason := strings.TrimRight(r.Reason, "\n"); reason != "" {
			b.WriteString(keyReason + ":\n")
			for _, l := range strings.Split(reason, "\n") {
				if l != "" {
					b.WriteString(reasonIndent + l)
				}
				b.WriteByte('\n')
			}
		}
		if r.Signature != "" {
			kv(keySignature, r.Signature)
		}
	}
	return b.Bytes()
}

// DecodeNote parses what EncodeNote writes, strictly: an unknown or repeated
// key, a block not starting with "gate:", a missing verdict, a bad value or a
// gate appearing twice is an error naming the line. Inside a reason, blank
// lines followed by more indented lines are empty reason lines. Empty input
// is an empty note.
func DecodeNote(b []byte) (Note, error) {
	var n Note
	lines := strings.Split(string(b), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}

	var (
		cur     *Record
		curLine int
		seen    map[string]bool
	)
	finish := func() error {
		if cur == nil {
			return nil
		}
		if !seen[keyVerdict] {
			return fmt.Errorf("line %d: gate %q has no verdict", curLine, cur.Gate)
		}
		if _, dup := n.Get(cur.Gate); dup {
			return fmt.Errorf("line %d: gate %q appears twice", curLine, cur.Gate)
		}
		n.Records = append(n.Records, *cur)
		cur, seen = nil, nil
		return nil
	}

	for i := 0; i < len(lines); i++ {
		line, no := lines[i], i+1
		if line == "" {
			if err := finish(); err != nil {
				return Note{}, err
			}
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return Note{}, fmt.Errorf("line %d: want \"key: value\"", no)
		}
		if cur == nil {
			if key != keyGate {
				return Note{}, fmt.Errorf("line %d: a block must start with %q, got %q", no, keyGate, key)
			}
			cur, curLine, seen = &Record{}, no, map[string]bool{}
		}
		if seen[key] {
			return Note{}, fmt.Errorf("line %d: repeated key %q", no, key)
		}
		seen[key] = true
		if key == keyReason {
			if value != "" {
				return Note{}, fmt.Errorf("line %d: reason lines go below \"reason:\", indented", no)
			}
			var reason []string
			j := i + 1
			for j < len(lines) {
				if l, ok := strings.CutPrefix(lines[j], reasonIndent); ok {
					reason = append(reason, l)
					j++
					continue
				}
				// Blank lines belong to the reason if more of it follows.
				k := j
				for k < len(lines) && lines[k] == "" {
					k++
				}
				if k == j || k == len(lines) || !strings.HasPrefix(lines[k], reasonIndent) {
					break
				}
				for ; j < k; j++ {
					reason = append(reason, "")
				}
			}
			if len(reason) == 0 || strings.TrimRight(strings.Join(reason, "\n"), "\n") == "" {
				return Note{}, fmt.Errorf("line %d: reason has no lines", no)
			}
			cur.Reason = strings.Join(reason, "\n")
			i = j - 1
			continue
		}
		v, ok := strings.CutPrefix(value, " ")
		if !ok || v == "" || v != strings.TrimSpace(v) || hasControl(v) {
			return Note{}, fmt.Errorf("line %d: %s: want one space and a value", no, key)
		}
		if err := setField(cur, key, v); err != nil {
			return Note{}, fmt.Errorf("line %d: %s: %w", no, key, err)
		}
	}
	if err := finish(); err != nil {
		return Note{}, err
	}
	return n, nil
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

func setField(r *Record, key, v string) error {
	switch key {
	case keyGate:
		r.Gate = v
	case keyVerdict:
		switch v {
		case VerdictPassed, VerdictFailed, VerdictError:
			r.Verdict = v
		default:
			return fmt.Errorf("unknown verdict %q", v)
		}
	case keyCandidate, keyRevertCommit:
		h, ok := parseHash(v)
		if !ok {
			return errors.New("want a full lowercase commit hash")
		}
		if key == keyCandidate {
			r.Candidate = h
		} else {
			r.RevertCommit = h
		}
	case keyDigest:
		if strings.ContainsAny(v, " \t") {
			return errors.New("digest has blanks")
		}
		r.Digest = v
	case keyReverted:
		for _, f := range strings.Split(v, " ") {
			h, ok := parseHash(f)
			if !ok {
				return fmt.Errorf("bad hash %q", f)
			}
			r.Reverted = append(r.Reverted, h)
		}
	case keySkipped:
		switch v {
		case "true":
			r.Skipped = true
		case "false":
		default:
			return fmt.Errorf("want true or false, got %q", v)
		}
	case keyStarted:
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return errors.New("want an RFC 3339 time")
		}
		r.Started = t
	case keySignature:
		if !validSignature(v) {
			return fmt.Errorf("want %s and 64 lowercase hex digits", signaturePrefix)
		}
		r.Signature = v
	case keyAttempts:
		a, err := strconv.Atoi(v)
		if err != nil || a < 0 || strconv.Itoa(a) != v {
			return fmt.Errorf("want a count, got %q", v)
		}
		r.Attempts = a
	case keyDurations:
		r.Durations = map[string]time.Duration{}
		for _, f := range strings.Split(v, " ") {
			k, d, ok := strings.Cut(f, "=")
			if !ok || !validDurationKey(k) {
				return fmt.Errorf("want name=duration, got %q", f)
			}
			if _, dup := r.Durations[k]; dup {
				return fmt.Errorf("repeated %q", k)
			}
			dur, err := time.ParseDuration(d)
			if err != nil {
				return fmt.Errorf("bad duration %q", d)
			}
			r.Durations[k] = dur
		}
	default:
		return errors.New("unknown key")
	}
	return nil
}

func validDurationKey(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ReadNote returns the note on commit from the local notes ref: the remote's
// as of the last Fetch, plus notes written since. found is false if there is
// none. Anybody can write a note, so it is read leniently: a gate's block
// that does not parse is left out, never an error. Nothing in it is
// verified; ReadRecord is what believes a record.
func (r *Repository) ReadNote(ctx context.Context, commit plumbing.Hash) (n Note, found bool, err error) {
	if err := r.mu.Lock(ctx); err != nil {
		return Note{}, false, err
	}
	defer r.mu.Unlock()
	b, found, err := r.readNoteBlobLocked(commit)
	if err != nil || !found {
		return Note{}, found, err
	}
	blocks, _ := splitNote(b)
	for _, bl := range blocks {
		if rec, ok := bl.record(); ok {
			if _, dup := n.Get(rec.Gate); !dup {
				n.Records = append(n.Records, rec)
			}
		}
	}
	return n, true, nil
}

// RecordState says what commit's note holds for one gate.
type RecordState int

const (
	// RecordAbsent: no note, or a note with no block for the gate.
	RecordAbsent RecordState = iota
	// RecordVerified: a record Sluice signed for this commit and gate.
	RecordVerified
	// RecordUnverifiable: a block for the gate that does not parse, is not
	// signed or is signed wrongly (changed, or copied from another commit),
	// or a note with text that belongs to no gate and nothing for this one.
	RecordUnverifiable
)

// ReadRecord returns gate's record on commit if key verifies it. Whatever
// else the note holds for the gate is RecordUnverifiable, and its Record is
// empty: the caller treats it as absent.
func (r *Repository) ReadRecord(ctx context.Context, commit plumbing.Hash, gate string, key *VerdictKey) (Record, RecordState, error) {
	if err := r.mu.Lock(ctx); err != nil {
		return Record{}, RecordAbsent, err
	}
	defer r.mu.Unlock()
	b, found, err := r.readNoteBlobLocked(commit)
	if err != nil || !found {
		return Record{}, RecordAbsent, err
	}
	blocks, orphan := splitNote(b)
	state := RecordAbsent
	if orphan {
		state = RecordUnverifiable
	}
	for _, bl := range blocks {
		if bl.gate != gate {
			continue
		}
		if rec, ok := bl.record(); ok && key.VerifyRecord(commit, rec) {
			return rec, RecordVerified, nil
		}
		state = RecordUnverifiable
	}
	return Record{}, state, nil
}

func (r *Repository) readNoteBlobLocked(commit plumbing.Hash) ([]byte, bool, error) {
	tip, err := r.refHash(NotesRef)
	if err != nil || tip.IsZero() {
		return nil, false, err
	}
	tree, err := r.commitTreeOf(tip)
	if err != nil {
		return nil, false, fmt.Errorf("read note: %w", err)
	}
	paths, err := r.notePaths(tree, commit.String(), "")
	if err != nil || len(paths) == 0 {
		return nil, false, err
	}
	b, err := readBlob(r.st, paths[0].hash)
	if err != nil {
		return nil, false, fmt.Errorf("read note on %s: %w", short(commit), err)
	}
	return b, true, nil
}

// noteBlock is one gate's part of a note, as written: from a line starting
// with "gate:" (at the start or after a blank line) up to the next such
// line, without trailing blank lines. A reason's lines are indented, so no
// reason can start a block.
type noteBlock struct {
	gate string
	text string
}

// splitNote cuts a note into blocks; orphan says there was text before the
// first block, which belongs to no gate.
func splitNote(b []byte) (blocks []noteBlock, orphan bool) {
	lines := strings.Split(string(b), "\n")
	var cur []string
	flush := func() {
		for len(cur) > 0 && strings.TrimSpace(cur[len(cur)-1]) == "" {
			cur = cur[:len(cur)-1]
		}
		if len(cur) > 0 {
			gate, _ := strings.CutPrefix(cur[0], keyGate+":")
			blocks = append(blocks, noteBlock{gate: strings.TrimSpace(gate), text: strings.Join(cur, "\n") + "\n"})
		}
		cur = nil
	}
	inBlock := false
	for i, l := range lines {
		if strings.HasPrefix(l, keyGate+":") && (i == 0 || lines[i-1] == "") {
			flush()
			inBlock = true
		}
		if !inBlock {
			if strings.TrimSpace(l) != "" {
				orphan = true
			}
			continue
		}
		cur = append(cur, l)
	}
	flush()
	return blocks, orphan
}

// record decodes the block strictly, as the one record of its gate.
func (bl noteBlock) record() (Record, bool) {
	n, err := DecodeNote([]byte(bl.text))
	if err != nil || len(n.Records) != 1 || n.Records[0].Gate != bl.gate {
		return Record{}, false
	}
	return n.Records[0], true
}

// setBlock replaces every block of gate by text ("" removes them).
func setBlock(blocks []noteBlock, gate, text string) []noteBlock {
	out := slices.DeleteFunc(slices.Clone(blocks), func(bl noteBlock) bool { return bl.gate == gate })
	if text != "" {
		out = append(out, noteBlock{gate: gate, text: text})
	}
	return out
}

// joinBlocks writes blocks sorted by gate, separated by a blank line.
func joinBlocks(blocks []noteBlock) []byte {
	blocks = slices.Clone(blocks)
	slices.SortStableFunc(blocks, func(a, b noteBlock) int { return strings.Compare(a.gate, b.gate) })
	var b bytes.Buffer
	for i, bl := range blocks {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(bl.text)
	}
	return b.Bytes()
}

// WriteNote sets the note on commit, replacing any earlier one, as a new
// commit on the local notes ref. The note is stored flat, under the full
// hash, as `git notes` does for small notes trees; PushNotes publishes it.
func (r *Repository) WriteNote(ctx context.Context, commit plumbing.Hash, n Note) error {
	if err := r.mu.Lock(ctx); err != nil {
		return err
	}
	defer r.mu.Unlock()
	return r.writeNoteLocked(commit, EncodeNote(n))
}

// SetRecord sets rec as the record of rec.Gate in commit's note, in one
// step: gates that record verdicts on the same commit at the same time never
// lose each other's records. The blocks of other gates are kept byte for
// byte, whether they parse or not (they are theirs to judge); text that
// belongs to no gate is dropped. A PushNotes running meanwhile publishes
// the notes as they were when it began; the next one publishes this record.
func (r *Repository) SetRecord(ctx context.Context, commit plumbing.Hash, rec Record) error {
	if err := r.mu.Lock(ctx); err != nil {
		return err
	}
	defer r.mu.Unlock()
	b, _, err := r.readNoteBlobLocked(commit)
	if err != nil {
		return err
	}
	blocks, _ := splitNote(b)
	blocks = setBlock(blocks, rec.Gate, string(EncodeNote(Note{Records: []Record{rec}})))
	return r.writeNoteLocked(commit, joinBlocks(blocks))
}

func (r *Repository) writeNoteLocked(commit plumbing.Hash, note []byte) error {
	tip, err := r.refHash(NotesRef)
	if err != nil {
		return err
	}
	var tree plumbing.Hash
	if !tip.IsZero() {
		if tree, err = r.commitTreeOf(tip); err != nil {
			return fmt.Errorf("write note: %w", err)
		}
	}
	blob, err := writeBlob(r.st, note)
	if err != nil {
		return fmt.Errorf("write note: %w", err)
	}
	updates := map[string]*object.TreeEntry{}
	if err := r.noteUpdate(tree, commit.String(), blob, updates); err != nil {
		return fmt.Errorf("write note: %w", err)
	}
	if len(updates) == 0 {
		return nil // same note already there
	}
	newTree, _, err := r.updateTree(tree, updates)
	if err != nil {
		return fmt.Errorf("write note: %w", err)
	}
	c, err := r.commitTreeLocked(newTree, tip, fmt.Sprintf("Notes added by Sluice on %s\n", commit), time.Now())
	if err != nil {
		return fmt.Errorf("write note: %w", err)
	}
	return r.setRef(NotesRef, c)
}

// noteUpdate adds to updates what sets the note key (full hex) to blob in
// tree: the flat entry, and the removal of the key under a fan-out path.
func (r *Repository) noteUpdate(tree plumbing.Hash, key string, blob plumbing.Hash, updates map[string]*object.TreeEntry) error {
	var existing []notePath
	if !tree.IsZero() {
		var err error
		if existing, err = r.notePaths(tree, key, ""); err != nil {
			return err
		}
	}
	if len(existing) == 1 && existing[0].path == key && existing[0].hash == blob {
		return nil
	}
	for _, p := range existing {
		if p.path != key {
			updates[p.path] = nil
		}
	}
	updates[key] = &object.TreeEntry{Name: key, Mode: filemode.Regular, Hash: blob}
	return nil
}

func (r *Repository) commitTreeOf(c plumbing.Hash) (plumbing.Hash, error) {
	co, err := object.GetCommit(r.st, c)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("notes commit %s: %w", short(c), err)
	}
	return co.TreeHash, nil
}

type notePath struct {
	path string
	hash plumbing.Hash
}

// notePaths finds the blobs holding the note for key (or its rest below a
// fan-out directory): flat "<40 hex>", or git's fan-out "ab/cdef...", at any depth.
func (r *Repository) notePaths(tree plumbing.Hash, rest, prefix string) ([]notePath, error) {
	t, err := object.GetTree(r.st, tree)
	if err != nil {
		return nil, err
	}
	var out []notePath
	for _, e := range t.Entries {
		switch {
		case e.Name == rest && e.Mode != filemode.Dir:
			out = append(out, notePath{path: prefix + e.Name, hash: e.Hash})
		case e.Mode == filemode.Dir && len(rest) > 2 && e.Name == rest[:2]:
			sub, err := r.notePaths(e.Hash, rest[2:], prefix+e.Name+"/")
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		}
	}
	// The flat entry (shortest path) first.
	slices.SortFunc(out, func(a, b notePath) int { return len(a.path) - len(b.path) })
	return out, nil
}

// allNotes maps every annotated commit (full hex) to its note blob, reading
// flat and fan-out layouts; other entries are ignored.
func (r *Repository) allNotes(ctx context.Context, tree plumbing.Hash) (map[string]plumbing.Hash, error) {
	out := map[string]plumbing.Hash{}
	if tree.IsZero() {
		return out, nil
	}
	var walk func(h plumbing.Hash, prefix string) error
	walk = func(h plumbing.Hash, prefix string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		t, err := object.GetTree(r.st, h)
		if err != nil {
			return err
		}
		for _, e := range t.Entries {
			key := prefix + e.Name
			switch {
			case e.Mode == filemode.Dir && len(e.Name) == 2 && len(key) < 40:
				if err := walk(e.Hash, key); err != nil {
					return err
				}
			case e.Mode != filemode.Dir:
				if _, ok := parseHash(key); ok {
					if _, dup := out[key]; !dup || prefix == "" {
						out[key] = e.Hash
					}
				}
			}
		}
		return nil
	}
	return out, walk(tree, "")
}

// syncNotesLocked lays the local notes ref on top of the remote-tracking one:
// a fast-forward when we wrote nothing since, nothing when the remote has
// nothing new, and otherwise a new notes commit on the remote's tip that
// re-applies our unpushed notes (see mergeNotes).
func (r *Repository) syncNotesLocked(ctx context.Context) error {
	local, err := r.refHash(NotesRef)
	if err != nil {
		return err
	}
	remote, err := r.refHash(remoteNotesRef)
	if err != nil {
		return err
	}
	switch {
	case remote.IsZero() || local == remote:
		return nil
	case local.IsZero():
		return r.setRef(NotesRef, remote)
	}
	if ok, err := r.isAncestorLocked(ctx, local, remote); err != nil {
		return err
	} else if ok {
		return r.setRef(NotesRef, remote)
	}
	if ok, err := r.isAncestorLocked(ctx, remote, local); err != nil {
		return err
	} else if ok {
		return nil // only our unpushed notes on top
	}
	merged, err := r.mergeNotes(ctx, local, remote)
	if err != nil {
		return err
	}
	return r.setRef(NotesRef, merged)
}

// mergeNotes re-applies the notes that ours changed since its merge base with
// theirs on top of theirs, and returns the new notes commit (theirs itself if
// nothing of ours is left). For a commit both sides annotated, the merge is
// per gate block: their blocks stay, ours replace those of the gates whose
// block we changed. Blocks are compared and kept as text, so a block that
// does not parse is merged like any other.
func (r *Repository) mergeNotes(ctx context.Context, ours, theirs plumbing.Hash) (plumbing.Hash, error) {
	oc, err := object.GetCommit(r.st, ours)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	tc, err := object.GetCommit(r.st, theirs)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	var baseTree plumbing.Hash
	bases, err := oc.MergeBase(tc)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if len(bases) > 0 {
		baseTree = bases[0].TreeHash
	}
	baseNotes, err := r.allNotes(ctx, baseTree)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	ourNotes, err := r.allNotes(ctx, oc.TreeHash)
	if err != nil {
		return plumbing.ZeroHash, err
	}

	updates := map[string]*object.TreeEntry{}
	for _, key := range sortedKeys(ourNotes) {
		if err := ctx.Err(); err != nil {
			return plumbing.ZeroHash, err
		}
		blob := ourNotes[key]
		if baseNotes[key] == blob {
			continue // not ours
		}
		ourBlocks, err := r.blobBlocks(blob)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("our note on %s: %w", key[:12], err)
		}
		var baseBlocks []noteBlock
		if b, ok := baseNotes[key]; ok {
			if baseBlocks, err = r.blobBlocks(b); err != nil {
				return plumbing.ZeroHash, err
			}
		}
		merged := ourBlocks
		theirPaths, err := r.notePaths(tc.TreeHash, key, "")
		if err != nil {
			return plumbing.ZeroHash, err
		}
		if len(theirPaths) > 0 {
			if merged, err = r.blobBlocks(theirPaths[0].hash); err != nil {
				return plumbing.ZeroHash, err
			}
			for _, bl := range ourBlocks {
				if !slices.Contains(baseBlocks, bl) {
					merged = setBlock(merged, bl.gate, bl.text)
				}
			}
		}
		newBlob, err := writeBlob(r.st, joinBlocks(merged))
		if err != nil {
			return plumbing.ZeroHash, err
		}
		if err := r.noteUpdate(tc.TreeHash, key, newBlob, updates); err != nil {
			return plumbing.ZeroHash, err
		}
	}
	if len(updates) == 0 {
		return theirs, nil
	}
	tree, _, err := r.updateTree(tc.TreeHash, updates)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	msg := fmt.Sprintf("Notes merged by Sluice onto %s\n", theirs)
	return r.commitTreeLocked(tree, theirs, msg, time.Now())
}

func (r *Repository) blobBlocks(h plumbing.Hash) ([]noteBlock, error) {
	b, err := readBlob(r.st, h)
	if err != nil {
		return nil, err
	}
	blocks, _ := splitNote(b)
	return blocks, nil
}

// PushNotes publishes the local notes ref to the remote's refs/notes/sluice
// by compare-and-swap against the remote-tracking value. If another writer
// moved it, it fetches theirs, re-applies our unpushed notes on top (per
// commit, per gate: see mergeNotes) and tries again, a bounded number of
// times; after that the error matches ErrStale.
//
// The merge happens under the repository lock, in one step with reading
// the local notes ref, as SetRecord's read-set-write does, so no record is
// lost between them; the push itself runs without the lock. It publishes
// the notes as they were when it took them: a record set while it talks to
// the remote is published by the next PushNotes.
//
// Calls in one process take turns (their own lock, not the repository's):
// the second publishes what the first left, instead of racing it for the
// remote ref and spending its attempts on the loss.
func (r *Repository) PushNotes(ctx context.Context) error {
	if err := r.notesMu.Lock(ctx); err != nil {
		return fmt.Errorf("push notes: %w", err)
	}
	defer r.notesMu.Unlock()
	for attempt := 1; ; attempt++ {
		start := r.gen.Load()
		local, remote, err := r.notesToPush(ctx)
		if err != nil {
			return fmt.Errorf("push notes: %w", err)
		}
		if local.IsZero() || local == remote {
			return nil
		}
		err = r.push(ctx, NotesRef, remote, local)
		if err == nil {
			// The remote moved: record it even if ctx is done by now.
			return r.mu.lockedAlways(func() error { return r.setNetRefLocked(remoteNotesRef, local, start, &remote) })
		}
		if !errors.Is(err, ErrStale) || attempt >= maxNotesPushAttempts {
			if attempt > 1 {
				return fmt.Errorf("push notes (after %d attempts): %w", attempt, err)
			}
			return fmt.Errorf("push notes: %w", err)
		}
		if err := r.fetch(ctx, nil); err != nil {
			return fmt.Errorf("push notes: %w", err)
		}
	}
}

// notesToPush lays the local notes ref on the remote-tracking one if it is
// not on it yet, and returns both: what to push, and where the remote is.
func (r *Repository) notesToPush(ctx context.Context) (local, remote plumbing.Hash, err error) {
	if err := r.mu.Lock(ctx); err != nil {
		return plumbing.ZeroHash, plumbing.ZeroHash, err
	}
	defer r.mu.Unlock()
	if remote, err = r.refHash(remoteNotesRef); err != nil {
		return plumbing.ZeroHash, plumbing.ZeroHash, err
	}
	if local, err = r.refHash(NotesRef); err != nil {
		return plumbing.ZeroHash, plumbing.ZeroHash, err
	}
	if local.IsZero() || local == remote || remote.IsZero() {
		return local, remote, nil
	}
	ok, err := r.isAncestorLocked(ctx, remote, local)
	if err != nil || ok {
		return local, remote, err
	}
	if err := r.syncNotesLocked(ctx); err != nil {
		return plumbing.ZeroHash, plumbing.ZeroHash, err
	}
	local, err = r.refHash(NotesRef)
	return local, remote, err
}
