package gitrepo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

func TestSignRecord(t *testing.T) {
	key := testKey(t, 'k')
	commit := hash('1')
	rec := sampleNote.Records[1]
	// Fields the note writes differently from how they are held: a local
	// time, trailing newlines in the reason.
	rec.Started = time.Date(2025, 3, 4, 6, 0, 0, 5, time.FixedZone("CET", 3600))
	rec.Reason += "\n\n"
	signed, err := key.SignRecord(commit, rec)
	if err != nil {
		t.Fatal(err)
	}
	n, err := DecodeNote(EncodeNote(Note{Records: []Record{sampleNote.Records[0], signed}}))
	if err != nil {
		t.Fatal(err)
	}
	read, _ := n.Get("staging")

	changed := func(f func(*Record)) Record {
		r := read
		r.Durations = map[string]time.Duration{}
		for k, v := range read.Durations {
			r.Durations[k] = v
		}
		f(&r)
		return r
	}
	tests := []struct {
		name   string
		key    *VerdictKey
		commit plumbing.Hash
		rec    Record
		want   bool
	}{
		{name: "the record as read back from the note", key: key, commit: commit, rec: read, want: true},
		{name: "copied onto another commit", key: key, commit: hash('2'), rec: read},
		{name: "checked with another key", key: testKey(t, 'o'), commit: commit, rec: read},
		{name: "no key verifies nothing", key: nil, commit: commit, rec: read},
		{name: "the verdict changed", key: key, commit: commit, rec: changed(func(r *Record) { r.Verdict = VerdictPassed })},
		{name: "the reason changed", key: key, commit: commit, rec: changed(func(r *Record) { r.Reason = "forged" })},
		{name: "moved to another gate", key: key, commit: commit, rec: changed(func(r *Record) { r.Gate = "prod" })},
		{name: "the revert commit removed", key: key, commit: commit, rec: changed(func(r *Record) { r.RevertCommit = plumbing.ZeroHash })},
		{name: "a duration changed", key: key, commit: commit, rec: changed(func(r *Record) { r.Durations["total"]++ })},
		{name: "unsigned", key: key, commit: commit, rec: changed(func(r *Record) { r.Signature = "" })},
		{name: "another record's signature", key: key, commit: commit, rec: changed(func(r *Record) {
			other, _ := key.SignRecord(commit, sampleNote.Records[0])
			r.Signature = other.Signature
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.key.VerifyRecord(tt.commit, tt.rec); got != tt.want {
				t.Errorf("VerifyRecord() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestVerdictKeyNeverShown(t *testing.T) {
	secret := "s3cret-" + strings.Repeat("x", MinVerdictKeyLen)
	key, err := NewVerdictKey([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("key", "key", key, "value", *key)
	js, _ := json.Marshal(struct{ K *VerdictKey }{key})
	ym, _ := yaml.Marshal(struct{ K *VerdictKey }{key})
	for name, text := range map[string]string{
		"%v": fmt.Sprintf("%v", key), "%+v": fmt.Sprintf("%+v", *key), "%#v": fmt.Sprintf("%#v", key), "%s": fmt.Sprintf("%s", *key),
		"slog": logged.String(), "json": string(js), "yaml": string(ym),
	} {
		if strings.Contains(text, "s3cret") || strings.Contains(text, "7333637265") {
			t.Errorf("%s shows the key: %s", name, text)
		}
	}
	if _, err := NewVerdictKey([]byte("s3cret-short")); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("NewVerdictKey(short) error = %v, want one that does not show it", err)
	}
}

func TestSignRevert(t *testing.T) {
	key := testKey(t, 'k')
	msg := RevertMessage(Commit{Hash: hash('b'), Subject: "bump B to v4"}, "staging", "broken")
	parent, tree := hash('a'), hash('d')
	signed := key.SignRevert(msg, parent, tree)
	if !strings.HasPrefix(signed, msg) || ParseTrailers(signed).Get(TrailerSignature) == "" || ParseTrailers(signed).Get(TrailerRejected) != hash('b').String() {
		t.Fatalf("SignRevert() =\n%s", signed)
	}
	tests := []struct {
		name string
		c    Commit
		want bool
	}{
		{name: "the commit it was made for", c: Commit{Parent: parent, Tree: tree, Message: signed}, want: true},
		{name: "another tree", c: Commit{Parent: parent, Tree: hash('e'), Message: signed}},
		{name: "another parent", c: Commit{Parent: hash('f'), Tree: tree, Message: signed}},
		{name: "another reason", c: Commit{Parent: parent, Tree: tree, Message: strings.Replace(signed, "broken", "forged", 1)}},
		{name: "another rejected commit", c: Commit{Parent: parent, Tree: tree, Message: strings.ReplaceAll(signed, hash('b').String(), hash('c').String())}},
		{name: "text after the signature", c: Commit{Parent: parent, Tree: tree, Message: signed + "Sluice-Gate: prod\n"}},
		{name: "no signature", c: Commit{Parent: parent, Tree: tree, Message: msg}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := key.verifyRevert(tt.c); got != tt.want {
				t.Errorf("verifyRevert() = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestReadRecord: only a record Sluice signed for this commit and gate is
// believed; anything else for the gate is unverifiable, and other gates'
// blocks survive SetRecord byte for byte.
func TestReadRecord(t *testing.T) {
	key := testKey(t, 'k')
	c := hash('1')
	good, err := key.SignRecord(c, Record{Gate: "staging", Verdict: VerdictPassed, Digest: "sha256:ab"})
	if err != nil {
		t.Fatal(err)
	}
	copied, _ := key.SignRecord(hash('2'), Record{Gate: "staging", Verdict: VerdictPassed})
	enc := func(recs ...Record) string { return string(EncodeNote(Note{Records: recs})) }
	theirs := "gate: prod\nverdict: passed\nfuture-key: something new\n"
	tests := []struct {
		name string
		note string
		want RecordState
	}{
		{name: "no note", note: "", want: RecordAbsent},
		{name: "only another gate's block, even one that does not parse", note: theirs, want: RecordAbsent},
		{name: "a signed record", note: enc(good), want: RecordVerified},
		{name: "a signed record beside text of nobody's", note: "garbage\n\n" + enc(good), want: RecordVerified},
		{name: "an unsigned passed record", note: enc(Record{Gate: "staging", Verdict: VerdictPassed}), want: RecordUnverifiable},
		{name: "a forged failed record", note: enc(Record{Gate: "staging", Verdict: VerdictFailed, Reason: "forged", Signature: good.Signature}), want: RecordUnverifiable},
		{name: "a record copied from another commit", note: enc(copied), want: RecordUnverifiable},
		{name: "a block that does not parse", note: "gate: staging\nverdict: passed\nwho: me\n", want: RecordUnverifiable},
		{name: "a note that does not parse at all", note: "LGTM, ship it\n", want: RecordUnverifiable},
		{name: "an unsigned record beside another gate's block", note: theirs + "\n" + enc(Record{Gate: "staging", Verdict: VerdictPassed}), want: RecordUnverifiable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := memRepo(t)
			if tt.note != "" {
				r.mu.Lock(t.Context())
				if err := r.writeNoteLocked(c, []byte(tt.note)); err != nil {
					t.Fatal(err)
				}
				r.mu.Unlock()
			}
			rec, state, err := r.ReadRecord(t.Context(), c, "staging", key)
			if err != nil || state != tt.want {
				t.Fatalf("ReadRecord() = %v, %v; want %v", state, err, tt.want)
			}
			if state == RecordVerified && rec.Digest != "sha256:ab" {
				t.Errorf("ReadRecord() = %+v", rec)
			}
			if state != RecordVerified && !cmp.Equal(rec, Record{}) {
				t.Errorf("ReadRecord() returned %+v for an unverified record", rec)
			}
			// Writing our record keeps other gates' blocks as they were.
			if err := r.SetRecord(t.Context(), c, good); err != nil {
				t.Fatal(err)
			}
			if _, state, _ := r.ReadRecord(t.Context(), c, "staging", key); state != RecordVerified {
				t.Errorf("after SetRecord: %v, want verified", state)
			}
			r.mu.Lock(t.Context())
			b, _, _ := r.readNoteBlobLocked(c)
			r.mu.Unlock()
			if strings.Contains(tt.note, theirs) && !strings.Contains(string(b), theirs) {
				t.Errorf("SetRecord lost another gate's block:\n%s", b)
			}
			if strings.Contains(string(b), "garbage") || strings.Contains(string(b), "LGTM") {
				t.Errorf("SetRecord kept text of no gate:\n%s", b)
			}
		})
	}
}
