package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// Commit is what the queue needs to know about one commit.
type Commit struct {
	Hash plumbing.Hash
	Tree plumbing.Hash
	// Parent is the first parent, ZeroHash for a root commit.
	Parent plumbing.Hash
	// Subject is the first line of Message.
	Subject string
	Message string
	Author  Signature
	// When is the author date.
	When     time.Time
	Trailers Trailers
}

// Short is the 12-character abbreviation of the commit hash.
func (c Commit) Short() string { return short(c.Hash) }

// Queue returns the first-parent commits of source after target's tip,
// oldest first: what `git rev-list --first-parent --reverse target..source`
// lists. A merged pull request is one entry, its merge commit. Both branches
// are read from the remote-tracking refs (Fetch first). If target's tip is not
// an ancestor of source's (by any parent), it returns ErrNotAncestor.
func (r *Repository) Queue(ctx context.Context, source, target string) ([]Commit, error) {
	if err := r.mu.Lock(ctx); err != nil {
		return nil, err
	}
	defer r.mu.Unlock()
	src, err := r.tipLocked(source)
	if err != nil {
		return nil, fmt.Errorf("queue: source: %w", err)
	}
	tgt, err := r.tipLocked(target)
	if err != nil {
		return nil, fmt.Errorf("queue: target: %w", err)
	}
	ok, err := r.isAncestorLocked(ctx, tgt, src)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("queue: %s (%s) is not in the history of %s (%s): %w",
			branchName(target), short(tgt), branchName(source), short(src), ErrNotAncestor)
	}
	commits, err := r.firstParentRange(ctx, src, tgt)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	slices.Reverse(commits)
	return commits, nil
}

// Log returns the first-parent commits from tip back to, not including,
// since, oldest first: `git rev-list --first-parent --reverse since..tip`
// when since is on tip's first-parent chain.
func (r *Repository) Log(ctx context.Context, tip, since plumbing.Hash) ([]Commit, error) {
	if err := r.mu.Lock(ctx); err != nil {
		return nil, err
	}
	defer r.mu.Unlock()
	commits, err := r.firstParentRange(ctx, tip, since)
	if err != nil {
		return nil, fmt.Errorf("log %s..%s: %w", short(since), short(tip), err)
	}
	slices.Reverse(commits)
	return commits, nil
}

// firstParentRange returns the first-parent commits from tip (newest first)
// that are not reachable from since; since may be ZeroHash for "to the root".
func (r *Repository) firstParentRange(ctx context.Context, tip, since plumbing.Hash) ([]Commit, error) {
	var out []Commit
	// The common case: since is on tip's first-parent chain, stop there.
	// Otherwise fall back to excluding everything reachable from since.
	var exclude map[plumbing.Hash]bool
	for h := tip; !h.IsZero(); {
		if h == since || exclude[h] {
			return out, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c, err := r.commitLocked(h)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
		h = c.Parent
		if h.IsZero() && !since.IsZero() && exclude == nil {
			// Reached the root without meeting since: since is reachable only
			// through a second parent. Redo with the full exclusion set.
			set, err := r.ancestors(ctx, since)
			if err != nil {
				return nil, err
			}
			exclude = set
			out, h = out[:0], tip
		}
	}
	return out, nil
}

// ancestors returns every commit reachable from h, h included.
func (r *Repository) ancestors(ctx context.Context, h plumbing.Hash) (map[plumbing.Hash]bool, error) {
	c, err := object.GetCommit(r.st, h)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", short(h), err)
	}
	set := map[plumbing.Hash]bool{}
	err = object.NewCommitPreorderIter(c, nil, nil).ForEach(func(c *object.Commit) error {
		set[c.Hash] = true
		return ctx.Err()
	})
	return set, err
}

// Commit reads one commit from the local cache.
func (r *Repository) Commit(ctx context.Context, h plumbing.Hash) (Commit, error) {
	if err := r.mu.Lock(ctx); err != nil {
		return Commit{}, err
	}
	defer r.mu.Unlock()
	return r.commitLocked(h)
}

func (r *Repository) commitLocked(h plumbing.Hash) (Commit, error) {
	c, err := object.GetCommit(r.st, h)
	if err != nil {
		return Commit{}, fmt.Errorf("commit %s: %w", short(h), err)
	}
	return toCommit(c), nil
}

func toCommit(c *object.Commit) Commit {
	var parent plumbing.Hash
	if len(c.ParentHashes) > 0 {
		parent = c.ParentHashes[0]
	}
	subject, _, _ := strings.Cut(c.Message, "\n")
	return Commit{
		Hash:     c.Hash,
		Tree:     c.TreeHash,
		Parent:   parent,
		Subject:  strings.TrimSpace(subject),
		Message:  c.Message,
		Author:   Signature{Name: c.Author.Name, Email: c.Author.Email},
		When:     c.Author.When,
		Trailers: ParseTrailers(c.Message),
	}
}

// IsAncestor reports whether a is b or reachable from b through any parents
// (git merge-base --is-ancestor a b).
func (r *Repository) IsAncestor(ctx context.Context, a, b plumbing.Hash) (bool, error) {
	if err := r.mu.Lock(ctx); err != nil {
		return false, err
	}
	defer r.mu.Unlock()
	return r.isAncestorLocked(ctx, a, b)
}

func (r *Repository) isAncestorLocked(ctx context.Context, a, b plumbing.Hash) (bool, error) {
	if a == b {
		return true, nil
	}
	if _, err := object.GetCommit(r.st, a); err != nil {
		return false, fmt.Errorf("commit %s: %w", short(a), err)
	}
	cb, err := object.GetCommit(r.st, b)
	if err != nil {
		return false, fmt.Errorf("commit %s: %w", short(b), err)
	}
	found := false
	err = object.NewCommitPreorderIter(cb, nil, nil).ForEach(func(c *object.Commit) error {
		if c.Hash == a {
			found = true
			return storer.ErrStop
		}
		return ctx.Err()
	})
	if err != nil && !errors.Is(err, storer.ErrStop) {
		return false, err
	}
	return found, nil
}
