package testenv

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
)

// Waiters get a start lowest priority first, whatever order they came in,
// never more than n at once; a cancelled waiter gives up its place and a
// release called twice frees one start only.
func TestStartLimitOrderAndBound(t *testing.T) {
	l := &startLimit{n: 2}
	ctx := context.Background()
	r1, err := l.acquire(ctx, 9)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := l.acquire(ctx, 8)
	if err != nil {
		t.Fatal(err)
	}

	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
		rels  = make(chan func(), 5)
	)
	enqueued := func(n int) {
		t.Helper()
		for {
			l.mu.Lock()
			got := len(l.waiting)
			l.mu.Unlock()
			if got == n {
				return
			}
		}
	}
	for i, prio := range []int{5, 3, 7, 1} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := l.acquire(ctx, prio)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, prio)
			mu.Unlock()
			rels <- r
		}()
		enqueued(i + 1)
	}
	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := l.acquire(cctx, 0) // would be first, but gives up
		errc <- err
	}()
	enqueued(5)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled wait returned %v, want context.Canceled", err)
	}

	r1()
	r1() // a second call frees nothing more
	first := <-rels
	mu.Lock()
	if len(order) != 1 || order[0] != 1 {
		t.Fatalf("after one release, started %v, want [1]", order)
	}
	mu.Unlock()
	r2()
	second := <-rels
	first()
	third := <-rels
	second()
	fourth := <-rels
	third()
	fourth()
	wg.Wait()
	if want := []int{1, 3, 5, 7}; !slices.Equal(order, want) {
		t.Fatalf("started in order %v, want %v", order, want)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.busy != 0 || len(l.waiting) != 0 {
		t.Fatalf("left busy=%d waiting=%d, want 0 and 0", l.busy, len(l.waiting))
	}
}

func TestStartLimitNone(t *testing.T) {
	for _, l := range []*startLimit{nil, {n: 0}} {
		var rels []func()
		for range 20 {
			r, err := l.acquire(context.Background(), 1)
			if err != nil {
				t.Fatal(err)
			}
			rels = append(rels, r)
		}
		for _, r := range rels {
			r()
		}
	}
}
