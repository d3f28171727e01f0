package gitrepo

import (
	"bytes"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// FuzzDecodeNote: DecodeNote never panics, and whatever it accepts encodes
// to text that decodes to the same note (EncodeNote is stable on it).
func FuzzDecodeNote(f *testing.F) {
	f.Add(EncodeNote(sampleNote))
	f.Add(EncodeNote(Note{Records: []Record{{Gate: "g", Verdict: VerdictError, Reason: "\n\nx\n\n\ny"}}}))
	f.Add([]byte(""))
	f.Add([]byte("gate: staging\nverdict: passed\n"))
	f.Add([]byte("gate: staging\nverdict: failed\nreason:\n    line one\n\n    line three\n\ngate: prod\nverdict: passed\n"))
	f.Add([]byte("gate: g\nverdict: passed\ndurations: render=1s apply=2m3s total=-1ns\nattempts: 3\n"))
	f.Add([]byte("gate: g\nverdict: passed\nstarted: 2025-01-02T03:04:05.123+02:00\n"))
	f.Add([]byte("gate: g\nverdict: passed\nreverted: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n"))
	f.Add([]byte("gate: g\nverdict: failed\nreason:\n"))
	f.Add([]byte("gate: g\nverdict: failed\nreason:\n    \n"))
	f.Add([]byte("gate: g\r\nverdict: passed\r\n"))
	f.Add([]byte("\n\n\ngate: g\nverdict: passed\n\n\n"))
	f.Add([]byte("gate: g\nverdict: passed\n\ngate: g\nverdict: passed\n"))
	f.Add([]byte("gate:\nverdict:\n:\n"))
	f.Add([]byte("gate: g\nverdict: passed\nreason:\n    x\nsignature: hmac-sha256:" + strings.Repeat("ab", 32) + "\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		n, err := DecodeNote(in)
		if err != nil {
			return
		}
		enc := EncodeNote(n)
		n2, err := DecodeNote(enc)
		if err != nil {
			t.Fatalf("DecodeNote(EncodeNote(DecodeNote(%q))) error = %v\nencoded:\n%s", in, err, enc)
		}
		if enc2 := EncodeNote(n2); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable for %q:\n%s\n---\n%s", in, enc, enc2)
		}
	})
}

// FuzzSignRecord: every record DecodeNote accepts, once signed, verifies
// after going through a note, for its commit only.
func FuzzSignRecord(f *testing.F) {
	f.Add(EncodeNote(sampleNote))
	f.Add([]byte("gate: g\nverdict: failed\nreason:\n\n    x\n\n\n    y\n"))
	f.Add([]byte("gate: g\nverdict: passed\nstarted: 2025-01-02T03:04:05.123+02:00\ndurations: a=1.500s\n"))
	key, err := NewVerdictKey(bytes.Repeat([]byte{'k'}, MinVerdictKeyLen))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		n, err := DecodeNote(in)
		if err != nil {
			return
		}
		for _, rec := range n.Records {
			signed, err := key.SignRecord(hash('1'), rec)
			if err != nil {
				t.Fatalf("SignRecord(%+v) = %v", rec, err)
			}
			back, err := DecodeNote(EncodeNote(Note{Records: []Record{signed}}))
			if err != nil || len(back.Records) != 1 {
				t.Fatalf("signed record does not decode: %v\n%s", err, EncodeNote(Note{Records: []Record{signed}}))
			}
			if !key.VerifyRecord(hash('1'), back.Records[0]) || key.VerifyRecord(hash('2'), back.Records[0]) {
				t.Fatalf("signed record of %q verifies wrongly", in)
			}
		}
	})
}

// FuzzParseTrailers: ParseTrailers never panics and returns well-formed
// trailers; RevertMessage's own trailers always parse back.
func FuzzParseTrailers(f *testing.F) {
	rev := RevertMessage(Commit{Hash: plumbing.NewHash(strings.Repeat("ab", 20)), Subject: "bump B to v4"}, "staging", "timed out\nwaiting")
	f.Add(rev, "staging", "reason")
	f.Add("subject\n\nSigned-off-by: A <a@example.com>\nCo-authored-by: B <b@example.com>\n", "g", "")
	f.Add("subject\n\nbody\n\nKey: value\n  continued\n", "g", "x")
	f.Add("Key: only a subject", "", "")
	f.Add("subject\r\n\r\nA: 1\r\n", "g", "\n\n")
	f.Add("subject\n\nprose\n(cherry picked from commit abc)\n", "g", "")
	f.Add("\n\n\n", "g\nwith newline", "Sluice-Gate: evil\n")
	f.Add("subject\n\n: no key\n \n\t\n", "g", "r")
	f.Fuzz(func(t *testing.T, msg, gate, reason string) {
		for _, tr := range ParseTrailers(msg) {
			if tr.Key == "" || strings.ContainsAny(tr.Key, "\n") || strings.Contains(tr.Value, "\n") {
				t.Fatalf("ParseTrailers(%q) gave malformed trailer %+v", msg, tr)
			}
		}
		c := Commit{Hash: plumbing.NewHash(strings.Repeat("cd", 20)), Subject: msg}
		m := RevertMessage(c, gate, reason)
		tr := ParseTrailers(m)
		if got := tr.Get(TrailerRejected); got != c.Hash.String() {
			t.Fatalf("RevertMessage(subject %q, gate %q, reason %q) trailers = %+v\n%s", msg, gate, reason, tr, m)
		}
		if want := oneLine(gate); tr.Get(TrailerGate) != want {
			t.Fatalf("RevertMessage() gate trailer = %q, want %q\n%s", tr.Get(TrailerGate), want, m)
		}
	})
}
