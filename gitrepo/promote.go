package gitrepo

import (
	"context"
	"crypto/hmac"
	"fmt"
	"io"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Trailer keys of a promotion commit (PromotionMessage), believed only under
// a valid Sluice-Signature made with the promotion domain (PromotionOf).
const (
	TrailerPromotedFrom = "Sluice-Promoted-From"
	TrailerPromotedPath = "Sluice-Promoted-Path"
)

// promotionDomain keeps a promotion's signature from being valid as a
// revert's or a record's, and the other way round.
const promotionDomain = "sluice promotion commit v1\x00"

// PromotionMessage is the message of the commit that copies path, as
// commit from changed it, from gate's folder into to's:
//
//	Promote <name> <summary> from <gate> to <to>
//
//	Gate <gate> passed <full sha>; this copies <path> to <target>.
//
//	Sluice-Gate: <gate>
//	Sluice-Promoted-From: <full sha>
//	Sluice-Promoted-Path: <path>
//
// VerdictKey.SignPromotion adds the Sluice-Signature trailer.
func PromotionMessage(gate, to, name, summary string, from plumbing.Hash, path, target string) string {
	subject := oneLine(fmt.Sprintf("Promote %s %s from %s to %s", name, summary, gate, to))
	if summary == "" {
		subject = oneLine(fmt.Sprintf("Promote %s from %s to %s", name, gate, to))
	}
	return fmt.Sprintf("%s\n\nGate %s passed %s; this copies %s to %s.\n\n%s: %s\n%s: %s\n%s: %s\n",
		subject, oneLine(gate), from, oneLine(path), oneLine(target),
		TrailerGate, oneLine(gate), TrailerPromotedFrom, from, TrailerPromotedPath, oneLine(path))
}

// SignPromotion appends a Sluice-Signature trailer to msg (a
// PromotionMessage) for the commit that will have parent and tree, as
// SignRevert does, in a domain of its own.
func (k *VerdictKey) SignPromotion(msg string, parent, tree plumbing.Hash) string {
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	return msg + TrailerSignature + ": " + k.mac(promotionDomain, parent.String(), tree.String(), msg) + "\n"
}

// Promotion is a commit Sluice wrote and signed to promote one file.
type Promotion struct {
	Commit Commit
	Gate   string        // the gate that passed From
	From   plumbing.Hash // the promoted commit
	Path   string        // the promoted file, relative to the root
}

// PromotionOf reports whether c is a promotion that k signed. A copied
// trailer, or a signature of a revert or record, proves nothing.
func (k *VerdictKey) PromotionOf(c Commit) (Promotion, bool) {
	if k == nil || c.Parent.IsZero() {
		return Promotion{}, false
	}
	body, last, ok := cutLastLine(c.Message)
	if !ok {
		return Promotion{}, false
	}
	sig, ok := strings.CutPrefix(last, TrailerSignature+": ")
	if !ok || !validSignature(sig) {
		return Promotion{}, false
	}
	if !hmac.Equal([]byte(sig), []byte(k.mac(promotionDomain, c.Parent.String(), c.Tree.String(), body))) {
		return Promotion{}, false
	}
	from, ok := parseHash(c.Trailers.Get(TrailerPromotedFrom))
	gate, path := c.Trailers.Get(TrailerGate), c.Trailers.Get(TrailerPromotedPath)
	if !ok || gate == "" || path == "" {
		return Promotion{}, false
	}
	return Promotion{Commit: c, Gate: gate, From: from, Path: path}, true
}

// Entry returns the hash and mode of the file at path (slash-separated,
// from the root) in tree; found is false when there is none or it is not a
// regular or executable file.
func (r *Repository) Entry(ctx context.Context, tree plumbing.Hash, path string) (h plumbing.Hash, mode filemode.FileMode, found bool, err error) {
	if err := r.mu.Lock(ctx); err != nil {
		return plumbing.ZeroHash, 0, false, err
	}
	defer r.mu.Unlock()
	if tree.IsZero() {
		return plumbing.ZeroHash, 0, false, nil
	}
	t, err := object.GetTree(r.st, tree)
	if err != nil {
		return plumbing.ZeroHash, 0, false, fmt.Errorf("tree %s: %w", short(tree), err)
	}
	e, err := t.FindEntry(path)
	if err != nil {
		return plumbing.ZeroHash, 0, false, nil
	}
	if e.Mode != filemode.Regular && e.Mode != filemode.Executable && e.Mode != filemode.Deprecated {
		return plumbing.ZeroHash, 0, false, nil
	}
	return e.Hash, e.Mode, true, nil
}

// SetEntry writes a copy of tree with the file at path set to the blob h
// with mode (creating directories), and returns its hash.
func (r *Repository) SetEntry(ctx context.Context, tree plumbing.Hash, path string, h plumbing.Hash, mode filemode.FileMode) (plumbing.Hash, error) {
	if err := r.mu.Lock(ctx); err != nil {
		return plumbing.ZeroHash, err
	}
	defer r.mu.Unlock()
	for _, part := range strings.Split(path, "/") {
		if !walkable(part) {
			return plumbing.ZeroHash, fmt.Errorf("%s: not a file name a tree can hold", path)
		}
	}
	if _, err := object.GetBlob(r.st, h); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("blob %s: %w", short(h), err)
	}
	out, blocked, err := r.updateTree(tree, map[string]*object.TreeEntry{path: {Mode: mode, Hash: h}})
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if len(blocked) > 0 {
		return plumbing.ZeroHash, fmt.Errorf("%s: a parent is not a directory in the tree", path)
	}
	return out, nil
}

// Blob returns the content of blob h, at most max bytes (larger is an error).
func (r *Repository) Blob(ctx context.Context, h plumbing.Hash, max int64) ([]byte, error) {
	if err := r.mu.Lock(ctx); err != nil {
		return nil, err
	}
	defer r.mu.Unlock()
	b, err := object.GetBlob(r.st, h)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", short(h), err)
	}
	if b.Size > max {
		return nil, fmt.Errorf("blob %s has %d bytes, more than %d", short(h), b.Size, max)
	}
	rd, err := b.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	buf := make([]byte, b.Size)
	if _, err := io.ReadFull(rd, buf); err != nil {
		return nil, err
	}
	return buf, nil
}
