package forge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fake records the statuses it is asked to set and answers with fail's
// errors in order (nil once they run out); gate, if set, holds each call
// until a value is sent on it.
type fake struct {
	mu    sync.Mutex
	got   []Status
	fail  []error
	gate  chan struct{}
	calls int
	// during, if set, runs inside the n-th call, before it answers.
	during func(n int)
}

func (f *fake) Name() string { return "fake" }

func (f *fake) PullRequests(context.Context, string, int) ([]PullRequest, error) { return nil, nil }

func (f *fake) SetStatus(ctx context.Context, s Status) error {
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	f.calls++
	n := f.calls
	f.mu.Unlock()
	if f.during != nil {
		f.during(n)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.fail) > 0 {
		err := f.fail[0]
		f.fail = f.fail[1:]
		if err != nil {
			return err
		}
	}
	f.got = append(f.got, s)
	return nil
}

func (f *fake) posted() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, s := range f.got {
		out = append(out, fmt.Sprintf("%s %s %s %s", s.Context, s.Commit, s.State, s.Description))
	}
	return out
}

type reports struct {
	mu  sync.Mutex
	got []string
}

func (r *reports) add(s Status, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	kind := "other"
	switch {
	case errors.Is(err, ErrAccess):
		kind = "access"
	case errors.Is(err, ErrDropped):
		kind = "dropped"
	}
	r.got = append(r.got, fmt.Sprintf("%s %s %s", kind, s.Commit, s.State))
}

func start(t *testing.T, f Forge, o PosterOptions) *Poster {
	t.Helper()
	o.InitialBackoff, o.MaxBackoff = time.Millisecond, 2*time.Millisecond
	p := NewPoster(f, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

func flush(t *testing.T, p *Poster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

func st(commit string, s State, desc string) Status {
	return Status{Commit: commit, Context: "sluice/staging", State: s, Description: desc}
}

func TestPosterLatestWins(t *testing.T) {
	f := &fake{gate: make(chan struct{})}
	p := start(t, f, PosterOptions{})
	p.Post(st("a", Pending, "queued"))
	// The first call is held: what follows waits in the queue, and the
	// later status of a commit replaces the earlier one.
	p.Post(st("b", Pending, "queued"))
	p.Post(st("b", Pending, "testing"))
	p.Post(st("b", Failure, "reverted: health"))
	if p.Post(st("b", Pending, "testing")) {
		t.Error("a pending after b's failure was queued, want it dropped")
	}
	close(f.gate)
	flush(t, p)
	want := []string{"sluice/staging a pending queued", "sluice/staging b failure reverted: health"}
	if diff := cmp.Diff(want, f.posted()); diff != "" {
		t.Errorf("posted (-want +got):\n%s", diff)
	}
	// Once posted too, the verdict stays.
	if p.Post(st("b", Pending, "retrying")) {
		t.Error("a pending after b's posted failure was queued")
	}
	flush(t, p)
	if diff := cmp.Diff(want, f.posted()); diff != "" {
		t.Errorf("posted after a stale pending (-want +got):\n%s", diff)
	}
}

func TestPosterReplaceGoesOverAVerdict(t *testing.T) {
	f := &fake{}
	p := start(t, f, PosterOptions{})
	pr := func(s State, desc string) Status {
		return Status{Commit: "h", Context: "sluice/staging/preview", State: s, Description: desc}
	}
	p.Post(pr(Success, "would pass on top of c1"))
	flush(t, p)
	// A preview judged anew: its pending and its error replace the old
	// verdict, which Post would keep.
	if !p.Replace(pr(Pending, "testing on top of c2")) {
		t.Fatal("Replace dropped a pending after a verdict")
	}
	flush(t, p)
	if !p.Replace(pr(Error, "conflicts with a.yaml in the queue; rebase")) {
		t.Fatal("Replace dropped an error")
	}
	flush(t, p)
	p.Replace(pr(Failure, "would fail"))
	flush(t, p)
	// A stale pending Posted after the new verdict is still dropped.
	if p.Post(pr(Pending, "stale")) {
		t.Error("a pending Posted after a Replaced verdict was queued")
	}
	flush(t, p)
	want := []string{
		"sluice/staging/preview h success would pass on top of c1",
		"sluice/staging/preview h pending testing on top of c2",
		"sluice/staging/preview h error conflicts with a.yaml in the queue; rebase",
		"sluice/staging/preview h failure would fail",
	}
	if diff := cmp.Diff(want, f.posted()); diff != "" {
		t.Errorf("posted (-want +got):\n%s", diff)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.order); n != 1 {
		t.Errorf("%d keys remembered as final, want 1: a Replaced key is remembered once", n)
	}
}

func TestPosterRetries(t *testing.T) {
	down := errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
	tests := []struct {
		name        string
		fail        []error
		attempts    int
		wantPosted  []string
		wantReports []string
	}{
		{
			name:       "a forge that is down for a while gets the status later",
			fail:       []error{down, &HTTPError{Code: 502}, &HTTPError{Code: 429}},
			wantPosted: []string{"sluice/staging a success passed"},
		},
		{
			name:        "a token the forge refuses is reported once and not retried",
			fail:        []error{&AccessError{Code: 403, Context: "sluice/staging"}},
			wantReports: []string{"access a success"},
		},
		{
			name:        "a refusal that is no access error is reported and not retried",
			fail:        []error{&HTTPError{Code: 422}},
			wantReports: []string{"other a success"},
		},
		{
			name:        "a forge down for longer than the attempts drops the status and says so",
			fail:        []error{down, down, down},
			attempts:    3,
			wantReports: []string{"dropped a success"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fake{fail: tt.fail}
			var r reports
			p := start(t, f, PosterOptions{Attempts: tt.attempts, OnError: r.add})
			p.Post(st("a", Success, "passed"))
			flush(t, p)
			if diff := cmp.Diff(tt.wantPosted, f.posted()); diff != "" {
				t.Errorf("posted (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantReports, r.got); diff != "" {
				t.Errorf("reported (-want +got):\n%s", diff)
			}
			if want := len(tt.fail) + len(tt.wantPosted); f.calls != want {
				t.Errorf("forge called %d times, want %d", f.calls, want)
			}
		})
	}
}

func TestPosterStaleRetryNeverOverwritesVerdict(t *testing.T) {
	// The pending fails; while it waits to be retried the verdict comes:
	// the verdict is posted and the pending is not posted after it.
	f := &fake{fail: []error{errors.New("connection reset")}}
	p := start(t, f, PosterOptions{})
	f.during = func(n int) {
		if n == 1 {
			p.Post(st("a", Failure, "reverted: tests"))
		}
	}
	p.Post(st("a", Pending, "testing"))
	flush(t, p)
	want := []string{"sluice/staging a failure reverted: tests"}
	if diff := cmp.Diff(want, f.posted()); diff != "" {
		t.Errorf("posted (-want +got):\n%s", diff)
	}
}

func TestPosterBoundedQueue(t *testing.T) {
	// A forge that never answers: Post still returns at once, the queue
	// keeps the newest QueueSize statuses and reports the ones it drops.
	f := &fake{gate: make(chan struct{})}
	var r reports
	p := start(t, f, PosterOptions{QueueSize: 2, OnError: r.add})
	for i := range 6 {
		p.Post(st(fmt.Sprint(i), Pending, "queued"))
	}
	// The worker holds one (the first it took); of the rest, the oldest
	// were dropped. Which one it took depends on when it woke, so count.
	r.mu.Lock()
	dropped := len(r.got)
	r.mu.Unlock()
	if dropped < 3 || dropped > 4 {
		t.Errorf("%d statuses dropped with 6 posted and room for 2 (+1 in flight), want 3 or 4: %v", dropped, r.got)
	}
	close(f.gate)
	flush(t, p)
	posted := f.posted()
	if got := len(posted) + dropped; got != 6 {
		t.Errorf("%d posted + %d dropped, want 6: %v", len(posted), dropped, posted)
	}
	if last := posted[len(posted)-1]; last != "sluice/staging 5 pending queued" {
		t.Errorf("last posted %q, want the newest status", last)
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 140, "short"},
		{"abcdef", 4, "abc…"},
		{"äöüßé", 3, "äö…"},
	}
	for _, tt := range tests {
		if got := Truncate(tt.in, tt.n); got != tt.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}
