// Package gitrepo reads the desired-state repository and moves its branches.
// Branches move only by fast-forward or by a new revert commit; it never force-pushes.
//
// A Repository is a local bare cache of one remote, "origin". Fetch brings
// the remote's branches into remote-tracking refs and its verdict notes
// (refs/notes/sluice) into a remote-tracking notes ref; everything else (the
// queue, candidate trees, revert commits, notes) is computed locally from
// that cache, and only Push and PushNotes write to the remote, each naming
// the old value it expects (compare-and-swap).
//
// The path of one queued commit C through the package:
//
//	Fetch(source, target)      remote branches and notes into the cache
//	Queue(source, target)      first-parent commits after the target, oldest first
//	Revert(pending, tree(C))   the candidate: C's tree without rejected commits
//	TreeFS(candidate, opts)    an io/fs view to render from
//	SignRecord, SetRecord      the verdict, one signed record per gate
//	PushNotes                  published; ReadRecord believes only a signed one
//	Push(target, old, C)       fast-forward when C passed, or else
//	CommitTree(Revert(C, tree(tip)), tip, SignRevert(RevertMessage(C, ...))), Push(source, tip, revert)
//
// Anybody who can push can write notes and trailers: a VerdictKey signs what
// Sluice writes, and ReadRecord and RevertOf believe nothing else (RevertOf
// also takes git's own revert whose tree undoes the commit).
//
// The package does not log. It returns records and errors; the sentinel
// errors (ErrConflict and friends) say which error means what for the caller.
package gitrepo
