package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/memory"
	"golang.org/x/crypto/ssh/knownhosts"
)

const (
	remoteName = "origin"
	// NotesRef is where Sluice keeps its verdict notes, locally and on the remote.
	NotesRef = plumbing.ReferenceName("refs/notes/sluice")
	// remoteNotesRef is the remote-tracking copy of the remote's NotesRef,
	// outside refs/remotes so no branch name can collide with it.
	remoteNotesRef = plumbing.ReferenceName("refs/sluice/remote-notes")
)

// Options say which remote to use and where to cache it.
type Options struct {
	// URL of the remote: file:// or an absolute path, http(s)://, ssh:// or git@host:path.
	URL string
	// Credentials for the remote; nil for none (ssh then uses go-git's defaults: the agent).
	Credentials *Credentials
	// Dir is the local cache, a bare repository created if missing. "" keeps it in memory.
	Dir string
	// Author signs revert and notes commits (author and committer).
	Author Signature
	// CABundle is extra PEM CA certificates for an https remote.
	CABundle []byte
	// Revert bounds the line merges of Revert; zero fields take defaults.
	Revert RevertOptions
}

// Signature is a commit author.
type Signature struct {
	Name, Email string
}

// DefaultAuthor signs commits when Options.Author is empty.
var DefaultAuthor = Signature{Name: "Sluice", Email: "sluice@localhost"}

// Repository is a local bare cache of one remote. Its methods are safe for
// concurrent use. Work on the local store is serialized by one lock, which
// is never held while talking to the remote: a slow Fetch, Push or
// PushNotes does not hold up another goroutine's TreeFS, Revert, ReadRecord
// or SetRecord (see netStorer). Every method that can block takes a context
// and returns its error once it is done, waits for the lock included.
type Repository struct {
	mu       ctxMutex
	notesMu  ctxMutex // PushNotes calls take turns; never held with mu waiting on it
	repo     *git.Repository
	st       storage.Storer
	remote   *config.RemoteConfig
	url      string // redacted, for errors
	auth     transport.AuthMethod
	caBundle []byte
	author   Signature
	scrub    scrubber
	// hostKeys says where an ssh remote's host key is checked, for errors.
	hostKeys string
	lock     *os.File // held on the cache directory; nil in memory
	revert   RevertOptions

	// gen counts the remote-tracking ref values applied after a network
	// operation; refGen says when each ref got its value (under mu). A
	// network operation that began at gen g does not overwrite a ref
	// applied after g: that value is as new as its own, or newer.
	gen    atomic.Uint64
	refGen map[plumbing.ReferenceName]uint64
}

// Close releases the cache directory for other processes. The Repository
// must not be used after.
func (r *Repository) Close() error {
	return r.mu.lockedAlways(func() error {
		if r.lock == nil {
			return nil
		}
		err := r.lock.Close()
		r.lock = nil
		return err
	})
}

// String names the remote. fmt would otherwise print the unexported
// fields, the credentials and the scrubber's list of secrets among them.
func (r *Repository) String() string { return fmt.Sprintf("gitrepo.Repository{URL: %q}", r.url) }

// GoString is String, for %#v.
func (r *Repository) GoString() string { return r.String() }

// LogValue is String, for log/slog.
func (r *Repository) LogValue() slog.Value { return slog.StringValue(r.String()) }

// Open opens (or creates) the local cache and points its remote "origin" at
// opts.URL. It does not talk to the remote; call Fetch.
func Open(ctx context.Context, opts Options) (*Repository, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	scrub := newScrubber(opts.URL, opts.Credentials)
	if opts.URL == "" {
		return nil, errors.New("open repository: empty URL")
	}
	ep, err := transport.NewEndpoint(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("open repository: bad URL %s: %s", redactURL(opts.URL), scrub.scrub(err.Error()))
	}
	auth, err := authMethod(ep, opts.Credentials)
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %s", redactURL(opts.URL), scrub.scrub(err.Error()))
	}

	var st storage.Storer
	var lock *os.File
	if opts.Dir == "" {
		st = memory.NewStorage()
	} else {
		if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("open repository cache: %w", err)
		}
		// go-git keeps no lock of its own across processes.
		if lock, err = lockDir(opts.Dir); err != nil {
			return nil, err
		}
		if lock != nil {
			removeStrays(opts.Dir)
		}
		st = filesystem.NewStorage(osfs.New(opts.Dir), cache.NewObjectLRUDefault())
	}
	ok := false
	defer func() {
		if !ok && lock != nil {
			lock.Close()
		}
	}()
	repo, err := git.Open(st, nil)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		repo, err = git.Init(st, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("open repository cache %s: %w", opts.Dir, err)
	}

	want := &config.RemoteConfig{
		Name:  remoteName,
		URLs:  []string{opts.URL},
		Fetch: []config.RefSpec{config.RefSpec("+refs/heads/*:refs/remotes/" + remoteName + "/*")},
	}
	remote, err := repo.Remote(remoteName)
	switch {
	case err == nil && len(remote.Config().URLs) == 1 && remote.Config().URLs[0] == opts.URL:
		// already set up
	case err == nil || errors.Is(err, git.ErrRemoteNotFound):
		if err == nil {
			if err := repo.DeleteRemote(remoteName); err != nil {
				return nil, fmt.Errorf("open repository cache: reset remote: %w", err)
			}
		}
		if remote, err = repo.CreateRemote(want); err != nil {
			return nil, fmt.Errorf("open repository cache: set remote %s: %s", redactURL(opts.URL), scrub.scrub(err.Error()))
		}
	default:
		return nil, fmt.Errorf("open repository cache: %w", err)
	}

	author := opts.Author
	if author.Name == "" {
		author.Name = DefaultAuthor.Name
	}
	if author.Email == "" {
		author.Email = DefaultAuthor.Email
	}
	var hostKeys string
	if ep.Protocol == "ssh" {
		hostKeys = knownHostsDescription(opts.Credentials)
	}
	ok = true
	return &Repository{
		mu:       newCtxMutex(),
		notesMu:  newCtxMutex(),
		refGen:   map[plumbing.ReferenceName]uint64{},
		lock:     lock,
		hostKeys: hostKeys,
		repo:     repo,
		st:       st,
		remote:   remote.Config(),
		url:      redactURL(opts.URL),
		auth:     auth,
		caBundle: opts.CABundle,
		author:   author,
		scrub:    scrub,
		revert:   opts.Revert,
	}, nil
}

// Fetch brings refs/heads/<b> of each named branch to refs/remotes/origin/<b>,
// and the remote's refs/notes/sluice to a remote-tracking notes ref, then
// lays the local notes ref on top of it (our unpushed notes re-applied, see
// PushNotes). A branch the remote does not have gives ErrBranchNotFound naming
// it, after the others were fetched.
//
// It talks to the remote without the repository lock; the refs it brings
// are applied afterwards in one step under the lock, with the notes laid on
// top, so no caller sees one without the other. A ref that another Fetch or
// Push applied while this one ran is left as they set it.
func (r *Repository) Fetch(ctx context.Context, branches ...string) error {
	for _, b := range branches {
		b = branchName(b)
		if err := plumbing.NewBranchReferenceName(b).Validate(); err != nil || b == "" {
			return fmt.Errorf("fetch: bad branch name %q", b)
		}
	}
	return r.fetch(ctx, branches)
}

func (r *Repository) fetch(ctx context.Context, branches []string) error {
	start := r.gen.Load()
	advertised, err := r.list(ctx)
	if err != nil {
		return err
	}
	var specs []config.RefSpec
	var missing []error
	updates := map[plumbing.ReferenceName]*plumbing.Reference{}
	want := map[plumbing.ReferenceName]bool{}
	for _, b := range branches {
		b = branchName(b)
		if _, ok := advertised[plumbing.NewBranchReferenceName(b)]; !ok {
			missing = append(missing, fmt.Errorf("fetch %s: branch %q: %w", r.url, b, ErrBranchNotFound))
			updates[trackingRef(b)] = nil // the remote deleted it: forget our stale copy
			continue
		}
		specs = append(specs, config.RefSpec(fmt.Sprintf("+refs/heads/%s:%s", b, trackingRef(b))))
		want[trackingRef(b)] = true
	}
	if _, ok := advertised[NotesRef]; ok {
		specs = append(specs, config.RefSpec(fmt.Sprintf("+%s:%s", NotesRef, remoteNotesRef)))
		want[remoteNotesRef] = true
	} else {
		updates[remoteNotesRef] = nil
	}

	if len(specs) > 0 {
		st := r.netStore(ctx)
		err := r.fetchInto(ctx, st, specs)
		switch {
		case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate):
		case errors.Is(err, git.NoMatchingRefSpecError{}):
			// A ref vanished between listing and fetching.
			return r.remoteErr(ctx, "fetch", fmt.Errorf("%w: %v", ErrBranchNotFound, err))
		default:
			return r.remoteErr(ctx, "fetch", err)
		}
		for name, ref := range overlay(st) {
			if want[name] {
				updates[name] = ref
			}
		}
	}

	if err := r.mu.Lock(ctx); err != nil {
		return err
	}
	defer r.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(updates)) {
		h := plumbing.ZeroHash
		if ref := updates[name]; ref != nil {
			h = ref.Hash()
		}
		if err := r.setNetRefLocked(name, h, start, nil); err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
	}
	if err := r.syncNotesLocked(ctx); err != nil {
		return fmt.Errorf("fetch: notes: %w", err)
	}
	return errors.Join(missing...)
}

// setNetRefLocked sets the remote-tracking ref name to h (ZeroHash:
// removes it), a value the remote had during a network operation that
// began when r.gen was start. If another operation applied a value to name
// since, that value is kept: it is as new as h or newer. With old given,
// h still replaces it while the ref is at old (a push from old to h).
func (r *Repository) setNetRefLocked(name plumbing.ReferenceName, h plumbing.Hash, start uint64, old *plumbing.Hash) error {
	if r.refGen[name] > start {
		cur, err := r.refHash(name)
		if err != nil {
			return err
		}
		if old == nil || cur != *old {
			return nil
		}
	}
	if err := r.setRef(name, h); err != nil {
		return err
	}
	r.refGen[name] = r.gen.Add(1)
	return nil
}

// list returns the remote's refs (ls-remote).
func (r *Repository) list(ctx context.Context) (map[plumbing.ReferenceName]plumbing.Hash, error) {
	refs, err := git.NewRemote(r.netStore(ctx), r.remote).ListContext(ctx, &git.ListOptions{Auth: r.auth, CABundle: r.caBundle})
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return map[plumbing.ReferenceName]plumbing.Hash{}, nil
	}
	if err != nil {
		return nil, r.remoteErr(ctx, "list", err)
	}
	out := make(map[plumbing.ReferenceName]plumbing.Hash, len(refs))
	for _, ref := range refs {
		if ref.Type() == plumbing.HashReference {
			out[ref.Name()] = ref.Hash()
		}
	}
	return out, nil
}

// Tip returns the remote-tracking tip of branch as of the last Fetch or Push.
func (r *Repository) Tip(ctx context.Context, branch string) (plumbing.Hash, error) {
	if err := r.mu.Lock(ctx); err != nil {
		return plumbing.ZeroHash, err
	}
	defer r.mu.Unlock()
	return r.tipLocked(branch)
}

func (r *Repository) tipLocked(branch string) (plumbing.Hash, error) {
	b := branchName(branch)
	ref, err := r.st.Reference(trackingRef(b))
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return plumbing.ZeroHash, fmt.Errorf("branch %q: %w", b, ErrBranchNotFound)
	}
	if err != nil {
		return plumbing.ZeroHash, err
	}
	return ref.Hash(), nil
}

func branchName(b string) string { return strings.TrimPrefix(b, "refs/heads/") }

func trackingRef(branch string) plumbing.ReferenceName {
	return plumbing.NewRemoteReferenceName(remoteName, branch)
}

// refHash returns the hash of a local ref, ZeroHash if it does not exist.
func (r *Repository) refHash(name plumbing.ReferenceName) (plumbing.Hash, error) {
	ref, err := r.st.Reference(name)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return plumbing.ZeroHash, nil
	}
	if err != nil {
		return plumbing.ZeroHash, err
	}
	return ref.Hash(), nil
}

func (r *Repository) setRef(name plumbing.ReferenceName, h plumbing.Hash) error {
	if h.IsZero() {
		return r.st.RemoveReference(name)
	}
	return r.st.SetReference(plumbing.NewHashReference(name, h))
}

// remoteErr turns a go-git error from talking to the remote into a
// *RemoteError: classified, and scrubbed of credentials.
func (r *Repository) remoteErr(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	var kinds []error
	for _, k := range []error{ErrAuth, ErrStale, ErrRejected, ErrBranchNotFound, ErrRepositoryNotFound, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, k) {
			kinds = append(kinds, k)
		}
	}
	text := err.Error()
	switch {
	case errors.Is(err, transport.ErrAuthenticationRequired),
		errors.Is(err, transport.ErrAuthorizationFailed),
		strings.Contains(text, "unable to authenticate"),
		strings.Contains(text, "no supported methods remain"):
		kinds = append(kinds, ErrAuth)
	case errors.Is(err, transport.ErrRepositoryNotFound):
		kinds = append(kinds, ErrRepositoryNotFound)
	case isHostKeyError(err):
		kinds = append(kinds, ErrHostKey)
		text += " (" + ErrHostKey.Error() + "; " + r.hostKeys + ")"
	}
	if errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
		kinds = append(kinds, context.DeadlineExceeded)
	}
	// go-git does not always wrap the context's error: a request cut short
	// by it is the context's doing whatever it says.
	if cerr := ctx.Err(); cerr != nil && !slices.Contains(kinds, cerr) {
		kinds = append(kinds, cerr)
	}
	return &RemoteError{Op: op, URL: r.url, msg: strings.TrimSpace(r.scrub.scrub(text)), kinds: kinds}
}

// isHostKeyError reports whether err is an SSH host key check that failed:
// a key known_hosts does not list for the host, or a host it has no key for.
func isHostKeyError(err error) bool {
	var ke *knownhosts.KeyError
	if errors.As(err, &ke) {
		return true
	}
	text := err.Error()
	return strings.Contains(text, "knownhosts: key ") || strings.Contains(text, "no common algorithm for host key")
}

// strayFiles are the temporary files a fetch writes into a cache
// directory, by the directory they are in, left there when the process
// ended in the middle of one (or, for go-git's own, when a pack was cut
// short): a bounded fetch's spool and go-git's pack and object temporaries.
var strayFiles = map[string][]string{
	".":             {"sluice-fetch-*"},
	"objects/pack/": {"tmp_pack_*", "tmp_obj_*"},
}

// removeStrays removes what strayFiles names in dir. Only while dir's lock
// is held: then no fetch of another process is writing them.
func removeStrays(dir string) {
	for sub, patterns := range strayFiles {
		entries, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range entries {
			if !e.Type().IsRegular() {
				continue
			}
			for _, pattern := range patterns {
				if ok, _ := filepath.Match(pattern, e.Name()); ok {
					_ = os.Remove(filepath.Join(dir, sub, e.Name()))
					break
				}
			}
		}
	}
}
