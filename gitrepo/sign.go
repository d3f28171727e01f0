package gitrepo

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// MinVerdictKeyLen is the shortest verdict key accepted, in bytes.
const MinVerdictKeyLen = 32

// signaturePrefix names the scheme of a signature, in notes and trailers.
const signaturePrefix = "hmac-sha256:"

// Domains keep a record's signature from being valid as a revert's, and the
// other way round.
const (
	recordDomain = "sluice verdict record v1\x00"
	revertDomain = "sluice revert commit v1\x00"
)

// VerdictKey is the secret Sluice signs its verdict records and revert
// commits with, so that nobody who can only push to the repository can
// write a verdict Sluice believes. Its String, GoString, LogValue,
// MarshalJSON and MarshalYAML never show the key.
type VerdictKey struct {
	secret []byte
}

// NewVerdictKey copies secret, which must be at least MinVerdictKeyLen bytes.
// The error never includes the secret.
func NewVerdictKey(secret []byte) (*VerdictKey, error) {
	if len(secret) < MinVerdictKeyLen {
		return nil, fmt.Errorf("verdict key has %d bytes, want at least %d", len(secret), MinVerdictKeyLen)
	}
	return &VerdictKey{secret: append([]byte(nil), secret...)}, nil
}

// String says that a key is set, never what it is.
func (k VerdictKey) String() string { return "gitrepo.VerdictKey{redacted}" }

// GoString is String, for %#v.
func (k VerdictKey) GoString() string { return k.String() }

// LogValue is String, for log/slog.
func (k VerdictKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// MarshalJSON is String as a JSON string.
func (k VerdictKey) MarshalJSON() ([]byte, error) { return json.Marshal(k.String()) }

// MarshalYAML is String.
func (k VerdictKey) MarshalYAML() (any, error) { return k.String(), nil }

func (k *VerdictKey) mac(domain string, parts ...string) string {
	m := hmac.New(sha256.New, k.secret)
	m.Write([]byte(domain))
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return signaturePrefix + hex.EncodeToString(m.Sum(nil))
}

// canonicalRecord is what a record's signature covers besides the commit:
// the record's own encoding without its signature, after one decode, so
// that what a reader decodes from the note encodes to the same bytes.
func canonicalRecord(rec Record) ([]byte, error) {
	rec.Signature = ""
	n, err := DecodeNote(EncodeNote(Note{Records: []Record{rec}}))
	if err != nil {
		return nil, fmt.Errorf("record of gate %q does not encode: %w", rec.Gate, err)
	}
	if len(n.Records) != 1 {
		return nil, fmt.Errorf("record of gate %q does not encode as one record", rec.Gate)
	}
	return EncodeNote(n), nil
}

// SignRecord returns rec, as a reader will decode it, signed for commit:
// the signature covers every field and the commit id, so the record can
// be neither changed nor copied onto another commit.
func (k *VerdictKey) SignRecord(commit plumbing.Hash, rec Record) (Record, error) {
	b, err := canonicalRecord(rec)
	if err != nil {
		return Record{}, err
	}
	n, _ := DecodeNote(b)
	signed := n.Records[0]
	signed.Signature = k.mac(recordDomain, commit.String(), string(b))
	return signed, nil
}

// VerifyRecord reports whether rec carries Sluice's signature for commit.
// A nil key verifies nothing.
func (k *VerdictKey) VerifyRecord(commit plumbing.Hash, rec Record) bool {
	if k == nil || rec.Signature == "" {
		return false
	}
	b, err := canonicalRecord(rec)
	if err != nil {
		return false
	}
	return hmac.Equal([]byte(rec.Signature), []byte(k.mac(recordDomain, commit.String(), string(b))))
}

// SignRevert appends a Sluice-Signature trailer to msg (a RevertMessage,
// ending in its trailer block) for the commit that will have parent and
// tree: the signature covers the message above it, the parent and the
// tree, so it proves that Sluice wrote exactly this commit.
func (k *VerdictKey) SignRevert(msg string, parent, tree plumbing.Hash) string {
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	return msg + TrailerSignature + ": " + k.mac(revertDomain, parent.String(), tree.String(), msg) + "\n"
}

// verifyRevert reports whether c's message ends with a Sluice-Signature
// trailer that k made for c's parent, tree and the message above it.
func (k *VerdictKey) verifyRevert(c Commit) bool {
	if k == nil || c.Parent.IsZero() {
		return false
	}
	body, last, ok := cutLastLine(c.Message)
	if !ok {
		return false
	}
	sig, ok := strings.CutPrefix(last, TrailerSignature+": ")
	if !ok || !validSignature(sig) {
		return false
	}
	return hmac.Equal([]byte(sig), []byte(k.mac(revertDomain, c.Parent.String(), c.Tree.String(), body)))
}

// cutLastLine splits "…\nlast\n" into "…\n" and "last".
func cutLastLine(msg string) (rest, last string, ok bool) {
	msg, ok = strings.CutSuffix(msg, "\n")
	if !ok {
		return "", "", false
	}
	i := strings.LastIndexByte(msg, '\n')
	if i < 0 {
		return "", "", false
	}
	return msg[:i+1], msg[i+1:], true
}

// validSignature accepts what mac writes: the prefix and 64 lowercase hex digits.
func validSignature(s string) bool {
	h, ok := strings.CutPrefix(s, signaturePrefix)
	if !ok || len(h) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
