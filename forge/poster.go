package forge

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// Defaults of PosterOptions.
const (
	DefaultQueueSize      = 1024
	DefaultInitialBackoff = time.Second
	DefaultMaxBackoff     = time.Minute
	DefaultAttempts       = 10
	DefaultRequestTimeout = 30 * time.Second
)

// ErrDropped is reported for a status that was never posted: the queue
// was full and it was the oldest, or it failed Attempts times.
var ErrDropped = errors.New("status dropped")

// PosterOptions bound a Poster's queue and retries.
type PosterOptions struct {
	// QueueSize bounds the statuses waiting (one per commit and context);
	// when full, the oldest is dropped and reported.
	QueueSize int
	// InitialBackoff and MaxBackoff space the retries of a forge that is
	// down; Attempts bounds them for one status.
	InitialBackoff, MaxBackoff time.Duration
	Attempts                   int
	// RequestTimeout bounds one request.
	RequestTimeout time.Duration
	// OnError, if set, is told of every status that could not be posted,
	// with the error (an *AccessError, or one wrapping ErrDropped); it is
	// called from the Poster's goroutine or from Post.
	OnError func(Status, error)
}

// DefaultPosterOptions are the defaults.
func DefaultPosterOptions() PosterOptions {
	return PosterOptions{
		QueueSize:      DefaultQueueSize,
		InitialBackoff: DefaultInitialBackoff,
		MaxBackoff:     DefaultMaxBackoff,
		Attempts:       DefaultAttempts,
		RequestTimeout: DefaultRequestTimeout,
	}
}

// maxFinal bounds the commits whose verdict a Poster remembers, so that a
// stale pending is not posted over it.
const maxFinal = 4096

// Poster posts statuses to a Forge from its own goroutine. Post never
// blocks; the latest status of a commit and context replaces one still
// waiting, and once a commit's context got success or failure a later
// pending for it is dropped, so a stale pending never hides a verdict.
type Poster struct {
	f    Forge
	opts PosterOptions

	mu       sync.Mutex
	seq      uint64
	waiting  map[string]queued // key -> the latest status not yet posted
	final    map[string]bool   // keys that got a verdict
	order    []string          // final's keys, oldest first
	busy     bool              // the goroutine is posting
	wake     chan struct{}
	idle     chan struct{} // closed and replaced when nothing waits
	attempts map[string]int
}

type queued struct {
	s   Status
	seq uint64
}

// NewPoster returns a Poster for f; Run must run for it to post.
func NewPoster(f Forge, o PosterOptions) *Poster {
	d := DefaultPosterOptions()
	if o.QueueSize <= 0 {
		o.QueueSize = d.QueueSize
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = d.InitialBackoff
	}
	if o.MaxBackoff < o.InitialBackoff {
		o.MaxBackoff = max(d.MaxBackoff, o.InitialBackoff)
	}
	if o.Attempts <= 0 {
		o.Attempts = d.Attempts
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = d.RequestTimeout
	}
	return &Poster{
		f: f, opts: o,
		waiting: map[string]queued{}, final: map[string]bool{}, attempts: map[string]int{},
		wake: make(chan struct{}, 1), idle: make(chan struct{}),
	}
}

// Forge is the forge the Poster posts to.
func (p *Poster) Forge() Forge { return p.f }

// Post queues s and returns at once. It reports false when s is dropped
// because its commit and context already have a verdict and s is pending.
func (p *Poster) Post(s Status) bool {
	k := s.key()
	var evicted *queued
	p.mu.Lock()
	if p.final[k] && !s.State.final() {
		p.mu.Unlock()
		return false
	}
	if s.State.final() && !p.final[k] {
		p.final[k] = true
		p.order = append(p.order, k)
		if len(p.order) > maxFinal {
			delete(p.final, p.order[0])
			p.order = p.order[1:]
		}
	}
	if _, ok := p.waiting[k]; !ok && len(p.waiting) >= p.opts.QueueSize {
		old := p.oldestLocked()
		evicted = &old
		delete(p.waiting, old.s.key())
	}
	p.seq++
	p.waiting[k] = queued{s: s, seq: p.seq}
	delete(p.attempts, k)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	if evicted != nil {
		p.report(evicted.s, errors.Join(ErrDropped, errors.New("the status queue is full")))
	}
	return true
}

// Replace is Post for a status whose every value supersedes the last, a
// verdict included: a pull request's preview judged anew on top of a new
// candidate. A pending Replace then takes the place of an earlier verdict.
func (p *Poster) Replace(s Status) bool {
	k := s.key()
	p.mu.Lock()
	if p.final[k] {
		delete(p.final, k)
		p.order = slices.DeleteFunc(p.order, func(o string) bool { return o == k })
	}
	p.mu.Unlock()
	return p.Post(s)
}

func (p *Poster) oldestLocked() queued {
	var o queued
	for _, q := range p.waiting {
		if o.seq == 0 || q.seq < o.seq {
			o = q
		}
	}
	return o
}

func (p *Poster) report(s Status, err error) {
	if p.opts.OnError != nil {
		p.opts.OnError(s, err)
	}
}

// Run posts queued statuses until ctx is done.
func (p *Poster) Run(ctx context.Context) {
	backoff := p.opts.InitialBackoff
	for {
		p.mu.Lock()
		if len(p.waiting) == 0 {
			p.busy = false
			close(p.idle)
			p.idle = make(chan struct{})
			p.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
				continue
			}
		}
		q := p.oldestLocked()
		k := q.s.key()
		delete(p.waiting, k)
		p.busy = true
		p.mu.Unlock()

		rctx, cancel := context.WithTimeout(ctx, p.opts.RequestTimeout)
		err := p.f.SetStatus(rctx, q.s)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			backoff = p.opts.InitialBackoff
			p.mu.Lock()
			delete(p.attempts, k)
			p.mu.Unlock()
			continue
		}
		if !retryable(err) {
			p.report(q.s, err)
			continue
		}
		p.mu.Lock()
		p.attempts[k]++
		n := p.attempts[k]
		_, newer := p.waiting[k]
		if !newer && n < p.opts.Attempts {
			// Back in the queue, unless a newer status replaced it.
			p.waiting[k] = q
		}
		if newer || n >= p.opts.Attempts {
			delete(p.attempts, k)
		}
		p.mu.Unlock()
		if !newer && n >= p.opts.Attempts {
			p.report(q.s, errors.Join(ErrDropped, err))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, p.opts.MaxBackoff)
	}
}

// Flush waits until nothing is waiting or being posted, or ctx is done.
func (p *Poster) Flush(ctx context.Context) error {
	for {
		p.mu.Lock()
		done := len(p.waiting) == 0 && !p.busy
		idle := p.idle
		p.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-idle:
		}
	}
}
