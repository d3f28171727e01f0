package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// Sentinel errors. Match them with errors.Is.
//
// How a caller tells the commit's fault from the infrastructure's:
//   - ErrConflict: a revert does not apply cleanly; a person must resolve it.
//   - ErrNotAncestor: the target branch is not an ancestor of the source; the
//     gate must stop (Sluice never force-pushes to fix that).
//   - ErrStale: the remote moved under a push; re-fetch, recompute, retry.
//   - everything else is the infrastructure's fault: failures talking to the
//     remote come as a *RemoteError (errors.As), and IsTransient tells those
//     worth retrying with backoff (network, timeouts, 5xx) from those that need
//     a person (ErrAuth, ErrHostKey, ErrRejected, ErrBranchNotFound, a missing repository).
var (
	// ErrNotAncestor: the target branch's tip is not in the source branch's history.
	ErrNotAncestor = errors.New("target is not an ancestor of source")
	// ErrConflict: a revert conflicts with later changes; see *ConflictError for the paths.
	ErrConflict = errors.New("revert conflict")
	// ErrStale: the remote ref is not at the expected old value, or the update
	// is not a fast-forward. Nothing was changed on the remote.
	ErrStale = errors.New("remote ref moved (stale old value or non-fast-forward)")
	// ErrBranchNotFound: the remote has no such branch (or it was never fetched).
	ErrBranchNotFound = errors.New("branch not found")
	// ErrAuth: the server refused the credentials (HTTP 401/403, SSH authentication).
	ErrAuth = errors.New("authentication failed")
	// ErrHostKey: an SSH server's host key is not the one known_hosts names
	// for it (or it has no entry there). Nothing was sent to the server.
	ErrHostKey = errors.New("SSH host key not trusted")
	// ErrRejected: the server refused an update for a reason other than a
	// stale old value, e.g. a pre-receive hook or branch protection.
	ErrRejected = errors.New("update rejected by remote")
	// ErrRepositoryNotFound: the remote repository does not exist (or is hidden from these credentials).
	ErrRepositoryNotFound = errors.New("remote repository not found")
	// ErrSymlinkEscape: a symlink in a tree points outside the tree (absolute, or above its root).
	ErrSymlinkEscape = errors.New("symlink points outside the tree")
)

// ConflictError reports the paths for which a revert could not be computed
// without guessing. errors.Is(err, ErrConflict) is true for it.
type ConflictError struct {
	// Commit is the commit being reverted.
	Commit plumbing.Hash
	// Paths are the conflicting paths, sorted.
	Paths []string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("revert %s: conflict in %s", short(e.Commit), strings.Join(e.Paths, ", "))
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// RemoteError is a failure talking to the remote: network, TLS, HTTP status,
// authentication, timeouts, or a refused update. Its text is scrubbed of
// credentials; the underlying library error is deliberately not kept (its
// text may hold secrets), only its classification (ErrAuth, ErrStale,
// ErrRejected, ErrBranchNotFound, ErrRepositoryNotFound, context errors),
// which errors.Is sees.
type RemoteError struct {
	// Op is what was being done: "fetch", "list", "push refs/heads/staging", ...
	Op string
	// URL is the remote URL without any userinfo password.
	URL string

	msg   string
	kinds []error
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("%s %s: %s", e.Op, e.URL, e.msg)
}

// Unwrap exposes only the classification sentinels, never the raw library error.
func (e *RemoteError) Unwrap() []error { return e.kinds }

// IsTransient reports whether err is an infrastructure failure talking to the
// remote that may go away by itself and is worth retrying with backoff:
// network errors, timeouts, server errors. It is false for nil, for
// ErrConflict / ErrNotAncestor / ErrStale (not infrastructure), for context
// cancellation (shutdown), and for failures that need a person: ErrAuth, ErrHostKey,
// ErrRejected, ErrBranchNotFound, ErrRepositoryNotFound.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	for _, permanent := range []error{
		context.Canceled, ErrConflict, ErrNotAncestor, ErrStale,
		ErrAuth, ErrHostKey, ErrRejected, ErrBranchNotFound, ErrRepositoryNotFound,
	} {
		if errors.Is(err, permanent) {
			return false
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var re *RemoteError
	return errors.As(err, &re)
}

// short is the 12-character abbreviation used in error messages.
func short(h plumbing.Hash) string { return h.String()[:12] }
