package gitrepo

import "context"

// ctxMutex is the repository's lock: a mutex whose wait a context cuts
// short. It is never held across network I/O, only across work on the
// local store, so a wait is as long as another caller's local work (a
// revert, a tree walk, the refs a fetch applies).
type ctxMutex struct{ ch chan struct{} }

func newCtxMutex() ctxMutex { return ctxMutex{ch: make(chan struct{}, 1)} }

// Lock takes the lock, or returns ctx's error if ctx is done first (or
// already).
func (m ctxMutex) Lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case m.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Unlock releases the lock.
func (m ctxMutex) Unlock() { <-m.ch }

// lockedAlways runs f under the lock, waiting for it whatever the context:
// for clean-up that must happen.
func (m ctxMutex) lockedAlways(f func() error) error {
	m.ch <- struct{}{}
	defer m.Unlock()
	return f()
}
