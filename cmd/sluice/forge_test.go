package main

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/google/go-cmp/cmp"

	"github.com/sluice-gitops/sluice/forge"
	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/reconcile"
	"github.com/sluice-gitops/sluice/testenv"
)

type recordingForge struct {
	mu  sync.Mutex
	got []string
}

func (f *recordingForge) Name() string { return "recording" }

func (f *recordingForge) SetStatus(_ context.Context, s forge.Status) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, fmt.Sprintf("%s %s %s %q %s", s.Context, s.Commit[:1], s.State, s.Description, s.TargetURL))
	return nil
}

func commitOf(c byte) gitrepo.Commit {
	var h plumbing.Hash
	for i := range h {
		h[i] = c
	}
	return gitrepo.Commit{Hash: h}
}

func TestForgeFeed(t *testing.T) {
	a, b, c, d := commitOf(0xaa), commitOf(0xbb), commitOf(0xcc), commitOf(0xdd)
	tests := []struct {
		name      string
		publicURL string
		events    []reconcile.Event
		want      []string
	}{
		{
			name:      "each commit is pending while tested, then passes or is reverted, linking the public URL",
			publicURL: "https://sluice.example.com/",
			events: []reconcile.Event{
				{Gate: "stg", Commit: a, Step: reconcile.StepRender},
				{Gate: "stg", Commit: a, Step: testenv.StepApply},
				{Gate: "stg", Commit: a, Step: "verdict", Verdict: reconcile.Passed},
				{Gate: "stg", Commit: b, Step: reconcile.StepRender},
				{Gate: "stg", Commit: b, Step: "revert", Revert: c.Hash},
				{Gate: "stg", Commit: b, Step: "verdict", Verdict: reconcile.Failed, Detail: "health: a not ready\ndeployment a: 0/1", Revert: c.Hash},
			},
			want: []string{
				`sluice/stg a pending "testing in sluice-stg-aaaaaaa" https://sluice.example.com/status/stg/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa`,
				`sluice/stg a success "passed" https://sluice.example.com/status/stg/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa`,
				`sluice/stg b pending "testing in sluice-stg-bbbbbbb" https://sluice.example.com/status/stg/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb`,
				`sluice/stg b failure "reverted: health: a not ready" https://sluice.example.com/status/stg/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb`,
			},
		},
		{
			name: "an error stays pending with its reason, and the retry is no new testing status",
			events: []reconcile.Event{
				{Gate: "stg", Commit: c, Step: reconcile.StepRender},
				{Gate: "stg", Commit: c, Step: "verdict", Verdict: reconcile.Error, Detail: "apply: connection refused"},
				{Gate: "stg", Commit: c, Step: reconcile.StepRender},
				{Gate: "stg", Commit: c, Step: "verdict", Verdict: reconcile.Passed, Detail: "renders the same objects as the last passed candidate"},
			},
			want: []string{
				`sluice/stg c pending "testing in sluice-stg-ccccccc" `,
				`sluice/stg c pending "retrying: apply: connection refused" `,
				`sluice/stg c success "passed: renders the same objects as the last passed candidate" `,
			},
		},
		{
			name: "a gate that does not revert says rejected; events without a commit post nothing",
			events: []reconcile.Event{
				{Gate: "stg", Step: "cleanup"},
				{Gate: "stg", Commit: d, Step: "verdict", Verdict: reconcile.Failed, Detail: "render: kustomize: no such file"},
			},
			want: []string{`sluice/stg d failure "rejected: render: kustomize: no such file" `},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &recordingForge{}
			p := forge.NewPoster(f, forge.PosterOptions{})
			feed := newForgeFeed(p, tt.publicURL)
			feed.gates["stg"] = forgeGate{target: "staging", serial: true}
			flush := runPoster(t, p)
			for _, e := range tt.events {
				feed.event(e)
				flush() // each status reaches the forge before the next event
			}
			if diff := cmp.Diff(tt.want, f.got); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}
		})
	}
}

func TestForgeFeedMarksTheRestOfTheQueue(t *testing.T) {
	a, b, c := commitOf(0xaa), commitOf(0xbb), commitOf(0xcc)
	f := &recordingForge{}
	p := forge.NewPoster(f, forge.PosterOptions{})
	feed := newForgeFeed(p, "")
	feed.gates["stg"] = forgeGate{target: "staging"}
	listed := make(chan string, 1)
	feed.queue = func(target string) ([]gitrepo.Commit, error) {
		listed <- target
		return []gitrepo.Commit{a, b, c}, nil
	}
	feed.event(reconcile.Event{Gate: "stg", Commit: b, Step: reconcile.StepRender})
	if got := <-listed; got != "staging" {
		t.Errorf("listed the queue of %q, want staging", got)
	}
	// markQueued runs beside the gate; wait until it has let go.
	for len(feed.listed) > 0 {
		time.Sleep(time.Millisecond)
	}
	runPoster(t, p)()
	want := []string{
		`sluice/stg b pending "testing" `,
		`sluice/stg c pending "queued" `,
	}
	if diff := cmp.Diff(want, f.got); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
}

// runPoster runs p until the test ends; flush waits until it posted
// everything it holds.
func runPoster(t *testing.T, p *forge.Poster) (flush func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return func() {
		t.Helper()
		if err := p.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
