package testenv

import (
	"context"
	"sort"
	"sync"
)

// startLimit lets at most n test environments start at once on a cluster
// (namespace, apply, health), the one earliest in its queue first.
//
// On a small cluster, eight candidates that start together share it
// fairly and all become healthy only when the last one does: none of their
// tests can begin before the cluster has done eight candidates' work. Let
// in one (or two) at a time in queue order, the first candidate's test
// runs while the second applies, and the window's tests overlap the
// cluster's work instead of waiting for all of it.
type startLimit struct {
	mu      sync.Mutex
	n, busy int
	seq     uint64
	waiting []*startWaiter // sorted by priority, then arrival
}

type startWaiter struct {
	priority int
	seq      uint64
	ready    chan struct{}
}

// acquire waits for a free start, the lowest priority value first (ties in
// arrival order), and returns the function that frees it (safe to call
// twice). A nil limit or n ≤ 0 never waits.
func (l *startLimit) acquire(ctx context.Context, priority int) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	l.mu.Lock()
	if l.n <= 0 || (l.busy < l.n && len(l.waiting) == 0) {
		l.busy++
		l.mu.Unlock()
		return l.releaser(), nil
	}
	l.seq++
	w := &startWaiter{priority: priority, seq: l.seq, ready: make(chan struct{})}
	i := sort.Search(len(l.waiting), func(i int) bool {
		o := l.waiting[i]
		return o.priority > priority || (o.priority == priority && o.seq > w.seq)
	})
	l.waiting = append(l.waiting, nil)
	copy(l.waiting[i+1:], l.waiting[i:])
	l.waiting[i] = w
	l.mu.Unlock()

	select {
	case <-w.ready:
		return l.releaser(), nil
	case <-ctx.Done():
		l.mu.Lock()
		defer l.mu.Unlock()
		select {
		case <-w.ready:
			// Handed a start just as ctx ended: pass it on.
			l.busy--
			l.wake()
		default:
			for i, o := range l.waiting {
				if o == w {
					l.waiting = append(l.waiting[:i], l.waiting[i+1:]...)
					break
				}
			}
		}
		return nil, ctx.Err()
	}
}

func (l *startLimit) releaser() func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.busy--
			l.wake()
		})
	}
}

// wake hands free starts to the first waiters. l.mu is held.
func (l *startLimit) wake() {
	for len(l.waiting) > 0 && (l.n <= 0 || l.busy < l.n) {
		w := l.waiting[0]
		l.waiting = l.waiting[1:]
		l.busy++
		close(w.ready)
	}
}

// SetStartLimit lets at most n test environments start at once on this
// cluster, across all gates that test on it: from the namespace's creation
// until the environment is healthy (or has failed). The rest wait, the
// lowest TestSpec.Priority first; the wait is reported as StepWait. n ≤ 0
// means no limit (the default). Call it before the first Test.
func (k *Cluster) SetStartLimit(n int) {
	k.starts = &startLimit{n: n}
}
