package testenv

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// each applies objects n at a time; the first error in the order of the
// objects is returned and no call starts after an error.
func TestEachBoundsConcurrencyAndStopsAtAnError(t *testing.T) {
	objs := make([]*unstructured.Unstructured, 50)
	for i := range objs {
		objs[i] = &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": fmt.Sprintf("o%02d", i)}}}
	}
	tests := []struct {
		name      string
		n         int
		failAt    map[string]bool
		wantErr   string
		wantCalls func(int) bool
	}{
		{name: "all succeed, one at a time", n: 1, wantCalls: func(c int) bool { return c == 50 }},
		{name: "all succeed, ten at a time", n: 10, wantCalls: func(c int) bool { return c == 50 }},
		{name: "an error stops what has not started", n: 1, failAt: map[string]bool{"o03": true}, wantErr: "o03", wantCalls: func(c int) bool { return c == 4 }},
		{name: "the first error in order wins", n: 50, failAt: map[string]bool{"o07": true, "o30": true}, wantErr: "o07", wantCalls: func(c int) bool { return c >= 8 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var calls, running, peak int32
			err := each(context.Background(), objs, tt.n, func(_ context.Context, o *unstructured.Unstructured) error {
				now := atomic.AddInt32(&running, 1)
				defer atomic.AddInt32(&running, -1)
				mu.Lock()
				calls++
				if now > peak {
					peak = now
				}
				mu.Unlock()
				if tt.failAt[o.GetName()] {
					return errors.New(o.GetName() + " refused")
				}
				return nil
			})
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr+" refused") {
				t.Errorf("each = %v, want %q", err, tt.wantErr)
			}
			if !tt.wantCalls(int(calls)) {
				t.Errorf("%d calls", calls)
			}
			if int(peak) > tt.n {
				t.Errorf("%d calls at once, want at most %d", peak, tt.n)
			}
		})
	}
}
