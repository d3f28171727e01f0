package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/go-git/go-billy/v5"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/index"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage"
	"github.com/go-git/go-git/v5/storage/filesystem/dotgit"
	"github.com/go-git/go-git/v5/storage/memory"
)

// netStorer is the view of the repository's store that a fetch or a push
// works on while it talks to the remote, without the repository lock.
//
// Neither of go-git's storers is safe for concurrent use (the memory one is
// plain maps; the filesystem one caches pack indexes and open packs in maps
// and writes refs by truncating files), and every other use of the store
// holds the lock. So each call here takes the lock for itself only:
//
//   - objects are read under the lock and handed out as copies in memory, so
//     nothing reads the store once the lock is released (a lazily read
//     object would read the pack, and its index, later, unlocked);
//   - objects are written under the lock, one at a time: a fetch into the
//     memory store parses the pack as it arrives and stores each object;
//   - a fetch into the filesystem store streams the pack into a temporary
//     file of its own and builds its index in a goroutine of its own
//     (dotgit.PackWriter), touching nothing shared; only registering the
//     finished pack's index with the store holds the lock;
//   - refs that go-git sets or removes stay here, in refs and removed, and
//     reads see them over the store's. The caller applies the ones it wants
//     afterwards, under the lock, in one step (see Repository.applyRefs).
//
// Objects written are visible to everyone before any ref names them; an
// object no ref names is harmless (git's own fetch does the same).
type netStorer struct {
	r   *Repository
	ctx context.Context // bounds each wait for the lock

	refsMu  sync.Mutex
	refs    map[plumbing.ReferenceName]*plumbing.Reference
	removed map[plumbing.ReferenceName]bool

	// limit bounds the bytes one fetch may bring: the pack as it arrives
	// into the filesystem store, the objects' sizes into the memory one.
	// 0: no bound.
	limit   int64
	written atomic.Int64
}

// ErrFetchTooLarge: a fetch brought more than its bound, and was stopped.
var ErrFetchTooLarge = errors.New("more than a fetch may bring")

// count adds n bytes to what the fetch brought, and refuses them past the
// bound.
func (s *netStorer) count(n int64) error {
	if s.limit > 0 && s.written.Add(n) > s.limit {
		return fmt.Errorf("%w (%d MiB)", ErrFetchTooLarge, s.limit>>20)
	}
	return nil
}

// tooLarge reports whether the fetch st worked for went past its bound.
func tooLarge(st storage.Storer) bool {
	s := netStorerOf(st)
	return s.limit > 0 && s.written.Load() > s.limit
}

// netStorerOf is the netStorer of st, a netStore.
func netStorerOf(st storage.Storer) *netStorer {
	if p, ok := st.(netPackStorer); ok {
		return p.netStorer
	}
	return st.(*netStorer)
}

// netPackStorer is a netStorer on a store that takes whole packfiles.
type netPackStorer struct{ *netStorer }

var (
	_ storage.Storer         = (*netStorer)(nil)
	_ storer.PackfileWriter  = netPackStorer{}
	_ storer.ReferenceStorer = (*netStorer)(nil)
)

// netStore returns a fresh netStorer for one network operation.
// fetchInto fetches specs from the remote into st (a netStore), without
// tags; the error is go-git's, for the caller to classify.
func (r *Repository) fetchInto(ctx context.Context, st storage.Storer, specs []config.RefSpec) error {
	return git.NewRemote(st, r.remote).FetchContext(ctx, &git.FetchOptions{
		RemoteName: remoteName,
		RefSpecs:   specs,
		Auth:       r.auth,
		Tags:       git.NoTags,
		CABundle:   r.caBundle,
	})
}

func (r *Repository) netStore(ctx context.Context) storage.Storer {
	s := &netStorer{r: r, ctx: ctx, refs: map[plumbing.ReferenceName]*plumbing.Reference{}, removed: map[plumbing.ReferenceName]bool{}}
	if _, ok := r.st.(storer.PackfileWriter); ok {
		return netPackStorer{s}
	}
	return s
}

// overlay returns the refs a network operation set (nil value: removed).
func overlay(st storage.Storer) map[plumbing.ReferenceName]*plumbing.Reference {
	s := netStorerOf(st)
	s.refsMu.Lock()
	defer s.refsMu.Unlock()
	out := make(map[plumbing.ReferenceName]*plumbing.Reference, len(s.refs)+len(s.removed))
	for n := range s.removed {
		out[n] = nil
	}
	for n, ref := range s.refs {
		out[n] = ref
	}
	return out
}

func (s *netStorer) locked(f func() error) error {
	if err := s.r.mu.Lock(s.ctx); err != nil {
		return err
	}
	defer s.r.mu.Unlock()
	return f()
}

// Objects.

func (s *netStorer) NewEncodedObject() plumbing.EncodedObject { return &plumbing.MemoryObject{} }

func (s *netStorer) SetEncodedObject(o plumbing.EncodedObject) (h plumbing.Hash, err error) {
	if err := s.count(o.Size()); err != nil {
		return plumbing.ZeroHash, err
	}
	err = s.locked(func() error {
		h, err = s.r.st.SetEncodedObject(o)
		return err
	})
	return h, err
}

func (s *netStorer) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (o plumbing.EncodedObject, err error) {
	err = s.locked(func() error {
		o, err = s.r.st.EncodedObject(t, h)
		if err != nil {
			return err
		}
		o, err = inMemory(o)
		return err
	})
	return o, err
}

// inMemory returns o with its content read, so that reading it needs
// nothing from the store. A stored MemoryObject is never written again and
// has its hash computed already: it is returned as is.
func inMemory(o plumbing.EncodedObject) (plumbing.EncodedObject, error) {
	if m, ok := o.(*plumbing.MemoryObject); ok {
		m.Hash() // computed now, under the lock, if it was not yet
		return m, nil
	}
	rd, err := o.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	m := &plumbing.MemoryObject{}
	m.SetType(o.Type())
	if _, err := io.Copy(m, rd); err != nil {
		return nil, err
	}
	if m.Hash() != o.Hash() {
		return nil, errors.New("object " + o.Hash().String() + " does not match its hash")
	}
	return m, nil
}

func (s *netStorer) IterEncodedObjects(t plumbing.ObjectType) (storer.EncodedObjectIter, error) {
	var objs []plumbing.EncodedObject
	err := s.locked(func() error {
		it, err := s.r.st.IterEncodedObjects(t)
		if err != nil {
			return err
		}
		return it.ForEach(func(o plumbing.EncodedObject) error {
			m, err := inMemory(o)
			objs = append(objs, m)
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	return storer.NewEncodedObjectSliceIter(objs), nil
}

func (s *netStorer) HasEncodedObject(h plumbing.Hash) error {
	return s.locked(func() error { return s.r.st.HasEncodedObject(h) })
}

func (s *netStorer) EncodedObjectSize(h plumbing.Hash) (n int64, err error) {
	err = s.locked(func() error {
		n, err = s.r.st.EncodedObjectSize(h)
		return err
	})
	return n, err
}

func (s *netStorer) AddAlternate(string) error {
	return errors.New("gitrepo: alternates are not supported")
}

// PackfileWriter takes the pack as it arrives into a temporary file of the
// store's own, unlocked. The filesystem store's writer (dotgit.PackWriter)
// builds the pack's index in a goroutine of its own as the pack arrives,
// and on Close writes the index file and moves both into place, touching
// nothing shared; only then does it register the index with the store
// (Notify), which holds the lock. A writer of another kind is closed
// under the lock. A bounded fetch's pack is spooled first (spool).
func (s netPackStorer) PackfileWriter() (io.WriteCloser, error) {
	if s.limit > 0 {
		return s.spool()
	}
	return s.packfileWriter()
}

func (s netPackStorer) packfileWriter() (io.WriteCloser, error) {
	var w io.WriteCloser
	err := s.locked(func() error {
		var err error
		w, err = s.r.st.(storer.PackfileWriter).PackfileWriter()
		return err
	})
	if err != nil {
		return nil, err
	}
	if pw, ok := w.(*dotgit.PackWriter); ok && pw.Notify != nil {
		register := pw.Notify
		pw.Notify = func(h plumbing.Hash, idx *idxfile.Writer) {
			// Always: the pack is in place, and the store must know it.
			_ = s.r.mu.lockedAlways(func() error {
				register(h, idx)
				return nil
			})
		}
		return pw, nil
	}
	return &lockedCloser{WriteCloser: w, s: s.netStorer}, nil
}

// spool takes a bounded fetch's pack into a file of its own first, and
// hands it to the store's writer only once it arrived whole and within
// the bound. A pack cut short leaves the store's writer with a temporary
// file and open descriptors it never removes (dotgit.PackWriter returns
// early on a pack it cannot parse); a spool is removed whatever happens.
func (s netPackStorer) spool() (io.WriteCloser, error) {
	var f billy.File
	var fs billy.Filesystem
	err := s.locked(func() error {
		st, ok := s.r.st.(interface{ Filesystem() billy.Filesystem })
		if !ok {
			return errors.New("gitrepo: a store that takes packs has no directory to spool them in")
		}
		fs = st.Filesystem()
		var err error
		f, err = fs.TempFile("", "sluice-fetch-")
		return err
	})
	if err != nil {
		return nil, err
	}
	return &spoolWriter{s: s, fs: fs, f: f}, nil
}

// spoolWriter is a bounded fetch's pack on its way to the store.
type spoolWriter struct {
	s  netPackStorer
	fs billy.Filesystem
	f  billy.File
	n  int64
}

func (w *spoolWriter) Write(p []byte) (int, error) {
	if err := w.s.count(int64(len(p))); err != nil {
		return 0, err
	}
	n, err := w.f.Write(p)
	w.n += int64(n)
	return n, err
}

// Close hands the pack to the store if it arrived within the bound, and
// removes the spool.
func (w *spoolWriter) Close() (err error) {
	defer func() {
		err = errors.Join(err, w.f.Close(), w.fs.Remove(w.f.Name()))
	}()
	if tooLarge(w.s) || w.n == 0 {
		return nil // the fetch has its error already, or brought nothing
	}
	if _, err := w.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	pw, err := w.s.packfileWriter()
	if err != nil {
		return err
	}
	_, err = io.Copy(pw, w.f)
	return errors.Join(err, pw.Close())
}

type lockedCloser struct {
	io.WriteCloser
	s *netStorer
}

// Close waits for the lock even if the context is done: the writer must
// be closed to remove its temporary file.
func (w *lockedCloser) Close() error {
	return w.s.r.mu.lockedAlways(w.WriteCloser.Close)
}

// References.

func (s *netStorer) SetReference(ref *plumbing.Reference) error {
	s.refsMu.Lock()
	defer s.refsMu.Unlock()
	s.refs[ref.Name()] = ref
	delete(s.removed, ref.Name())
	return nil
}

// CheckAndSetReference checks old against the refs this operation set,
// not against the store: the store's refs may move while it runs (another
// operation applied its own), and which value wins is decided when the
// refs are applied (Repository.setNetRefLocked), not here.
func (s *netStorer) CheckAndSetReference(new, old *plumbing.Reference) error {
	if old != nil {
		s.refsMu.Lock()
		cur, set := s.refs[old.Name()]
		s.refsMu.Unlock()
		if set && cur.Hash() != old.Hash() {
			return storage.ErrReferenceHasChanged
		}
	}
	return s.SetReference(new)
}

func (s *netStorer) Reference(n plumbing.ReferenceName) (ref *plumbing.Reference, err error) {
	s.refsMu.Lock()
	ref, set := s.refs[n]
	removed := s.removed[n]
	s.refsMu.Unlock()
	if set {
		return ref, nil
	}
	if removed {
		return nil, plumbing.ErrReferenceNotFound
	}
	err = s.locked(func() error {
		ref, err = s.r.st.Reference(n)
		return err
	})
	return ref, err
}

func (s *netStorer) IterReferences() (storer.ReferenceIter, error) {
	over := overlay(s)
	var refs []*plumbing.Reference
	err := s.locked(func() error {
		it, err := s.r.st.IterReferences()
		if err != nil {
			return err
		}
		return it.ForEach(func(ref *plumbing.Reference) error {
			if _, ok := over[ref.Name()]; !ok {
				refs = append(refs, ref)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	for _, ref := range over {
		if ref != nil {
			refs = append(refs, ref)
		}
	}
	return storer.NewReferenceSliceIter(refs), nil
}

func (s *netStorer) RemoveReference(n plumbing.ReferenceName) error {
	s.refsMu.Lock()
	defer s.refsMu.Unlock()
	delete(s.refs, n)
	s.removed[n] = true
	return nil
}

func (s *netStorer) CountLooseRefs() (int, error) { return 0, nil }
func (s *netStorer) PackRefs() error              { return nil }

// The rest: Sluice's cache is bare and never shallow.

func (s *netStorer) SetShallow([]plumbing.Hash) error {
	return errors.New("gitrepo: shallow fetches are not supported")
}
func (s *netStorer) Shallow() ([]plumbing.Hash, error) { return nil, nil }

func (s *netStorer) SetIndex(*index.Index) error {
	return errors.New("gitrepo: the cache is bare")
}
func (s *netStorer) Index() (*index.Index, error) {
	return nil, errors.New("gitrepo: the cache is bare")
}

func (s *netStorer) Config() (c *config.Config, err error) {
	err = s.locked(func() error {
		c, err = s.r.st.Config()
		return err
	})
	return c, err
}

func (s *netStorer) SetConfig(*config.Config) error {
	return errors.New("gitrepo: a network operation does not change the configuration")
}

func (s *netStorer) Module(string) (storage.Storer, error) {
	return memory.NewStorage(), nil
}
