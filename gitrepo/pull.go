package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
)

// MaxPullFetch is what one pull request's fetch may bring by default: the
// pack's bytes into a cache directory, the objects' bytes into memory.
const MaxPullFetch = 256 << 20

// PullRef is the local ref Sluice keeps pull request n's head at. It is
// named by Sluice from the number alone, never by the forge.
func PullRef(n int64) plumbing.ReferenceName {
	return plumbing.ReferenceName(fmt.Sprintf("refs/sluice/pulls/%d", n))
}

// FetchPull fetches the remote's ref from, a pull request's head as its
// forge serves it (refs/pull/N/head, refs/merge-requests/N/head), into
// PullRef(n), and returns the commit it names. Only a valid ref under
// refs/ that is no branch, tag, note or ref of Sluice's own is fetched;
// nothing but PullRef(n) is written. A pull request can bring any amount
// of history: ctx bounds the fetch's time, and limit (bytes; ≤ 0:
// MaxPullFetch) what it may bring, past which it stops with an error that
// is ErrFetchTooLarge and writes no ref.
func (r *Repository) FetchPull(ctx context.Context, from string, n int64, limit int64) (plumbing.Hash, error) {
	name := plumbing.ReferenceName(from)
	if n <= 0 || name.Validate() != nil || !strings.HasPrefix(from, "refs/") || strings.ContainsAny(from, "*:^~") ||
		name.IsBranch() || name.IsTag() || name.IsNote() || strings.HasPrefix(from, "refs/sluice/") || strings.HasPrefix(from, "refs/remotes/") {
		return plumbing.ZeroHash, fmt.Errorf("fetch pull request %d: %q is not a ref a pull request's head is served at", n, from)
	}
	to := PullRef(n)
	if limit <= 0 {
		limit = MaxPullFetch
	}
	st := r.netStore(ctx)
	netStorerOf(st).limit = limit
	err := r.fetchInto(ctx, st, []config.RefSpec{config.RefSpec("+" + from + ":" + string(to))})
	switch {
	case err != nil && tooLarge(st):
		return plumbing.ZeroHash, fmt.Errorf("fetch %s: %w (%d MiB)", from, ErrFetchTooLarge, limit>>20)
	case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate):
	case errors.Is(err, git.NoMatchingRefSpecError{}):
		return plumbing.ZeroHash, fmt.Errorf("fetch %s: %w", from, ErrBranchNotFound)
	default:
		return plumbing.ZeroHash, r.remoteErr(ctx, "fetch "+from, err)
	}
	if err := r.mu.Lock(ctx); err != nil {
		return plumbing.ZeroHash, err
	}
	defer r.mu.Unlock()
	if ref := overlay(st)[to]; ref != nil {
		if err := r.setRef(to, ref.Hash()); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("fetch %s: %w", from, err)
		}
		return ref.Hash(), nil
	}
	// Up to date: the ref already names the remote's commit.
	h, err := r.refHash(to)
	if err == nil && h.IsZero() {
		err = errors.New("no commit fetched")
	}
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("fetch %s: %w", from, err)
	}
	return h, nil
}

// PrunePulls removes the refs FetchPull wrote for pull requests not in
// open, so that closed pull requests leave nothing behind, and returns how
// many it removed. No other ref is touched.
func (r *Repository) PrunePulls(ctx context.Context, open []int64) (int, error) {
	keep := map[plumbing.ReferenceName]bool{}
	for _, n := range open {
		keep[PullRef(n)] = true
	}
	if err := r.mu.Lock(ctx); err != nil {
		return 0, err
	}
	defer r.mu.Unlock()
	it, err := r.st.IterReferences()
	if err != nil {
		return 0, fmt.Errorf("prune pull request refs: %w", err)
	}
	var stale []plumbing.ReferenceName
	err = it.ForEach(func(ref *plumbing.Reference) error {
		if name := ref.Name(); strings.HasPrefix(name.String(), "refs/sluice/pulls/") && !keep[name] {
			stale = append(stale, name)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune pull request refs: %w", err)
	}
	for i, name := range stale {
		if err := r.st.RemoveReference(name); err != nil {
			return i, fmt.Errorf("prune pull request refs: remove %s: %w", name, err)
		}
	}
	return len(stale), nil
}
