package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Push moves refs/heads/<branch> on the remote from old to new, never by
// force: new must descend from old, and the remote must still be at old
// (compare-and-swap: checked by go-git against the advertised refs, and again
// by the server, which refuses the update if the ref moved meanwhile). old
// ZeroHash means "create; the branch must not exist". When the remote is not
// at old, or new is not a fast-forward, the error matches ErrStale and
// nothing changed: re-fetch and retry. A refusal for another reason (hook,
// branch protection) matches ErrRejected. On success the remote-tracking ref
// is set to new, unless a Fetch applied a newer value meanwhile. The
// repository lock is not held while it talks to the remote.
func (r *Repository) Push(ctx context.Context, branch string, old, new plumbing.Hash) error {
	b := branchName(branch)
	ref := plumbing.NewBranchReferenceName(b)
	if err := ref.Validate(); err != nil || b == "" {
		return fmt.Errorf("push: bad branch name %q", branch)
	}
	start := r.gen.Load()
	if err := r.push(ctx, ref, old, new); err != nil {
		return err
	}
	// The remote moved: record it even if ctx is done by now.
	return r.mu.lockedAlways(func() error { return r.setNetRefLocked(trackingRef(b), new, start, &old) })
}

// push is the compare-and-swap update of one remote ref. It checks new
// under the lock, then talks to the remote without it.
func (r *Repository) push(ctx context.Context, ref plumbing.ReferenceName, old, new plumbing.Hash) error {
	op := "push " + ref.String()
	if new.IsZero() {
		return fmt.Errorf("%s: refusing to delete", op)
	}
	if err := r.mu.Lock(ctx); err != nil {
		return err
	}
	err := r.checkPushLocked(ctx, op, old, new)
	r.mu.Unlock()
	if err != nil || old == new {
		return err
	}
	opts := &git.PushOptions{
		RemoteName: remoteName,
		RefSpecs:   []config.RefSpec{config.RefSpec(new.String() + ":" + ref.String())},
		Auth:       r.auth,
		CABundle:   r.caBundle,
	}
	if old.IsZero() {
		// RequireRemoteRefs cannot say "absent": check it here; the server
		// still refuses a create over an existing ref (old value zero).
		advertised, err := r.list(ctx)
		if err != nil {
			return err
		}
		if cur, ok := advertised[ref]; ok {
			return fmt.Errorf("%s: remote is at %s, expected no ref: %w", op, short(cur), ErrStale)
		}
	} else {
		opts.RequireRemoteRefs = []config.RefSpec{config.RefSpec(old.String() + ":" + ref.String())}
	}

	err = git.NewRemote(r.netStore(ctx), r.remote).PushContext(ctx, opts)
	if err == nil || errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil
	}
	return r.remoteErr(ctx, op, classifyPushError(err))
}

// checkPushLocked checks that new is in the store and, unless old is zero,
// a fast-forward of old.
func (r *Repository) checkPushLocked(ctx context.Context, op string, old, new plumbing.Hash) error {
	if _, err := object.GetCommit(r.st, new); err != nil {
		return fmt.Errorf("%s: new value %s: %w", op, short(new), err)
	}
	if old == new || old.IsZero() {
		return nil
	}
	ok, err := r.isAncestorLocked(ctx, old, new)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if !ok {
		return fmt.Errorf("%s: %s is not a fast-forward of %s: %w", op, short(new), short(old), ErrStale)
	}
	return nil
}

// staleMarkers are how go-git and git's receive-pack say the ref was not
// where we expected it.
var staleMarkers = []string{
	"required to be",           // go-git RequireRemoteRefs
	"non-fast-forward",         // go-git's own check, or receive.denyNonFastForwards
	"fetch first",              // git
	"stale info",               // git
	"failed to update ref",     // receive-pack: ref changed under the lock
	"failed to lock",           // receive-pack
	"cannot lock ref",          // receive-pack
	"but expected",             // receive-pack: "is at X but expected Y"
	"reference already exists", // receive-pack, create over an existing ref
}

// classifyPushError marks a push failure as ErrStale or ErrRejected.
func classifyPushError(err error) error {
	if errors.Is(err, git.ErrForceNeeded) {
		return fmt.Errorf("%w: %v", ErrStale, err)
	}
	text := err.Error()
	for _, m := range staleMarkers {
		if strings.Contains(text, m) {
			return fmt.Errorf("%w: %v", ErrStale, err)
		}
	}
	if strings.Contains(text, "command error on") || strings.Contains(text, "declined") ||
		strings.Contains(text, "denied") || strings.Contains(text, "rejected") {
		return fmt.Errorf("%w: %v", ErrRejected, err)
	}
	return err
}
