package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/google/go-cmp/cmp"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/notify"
	"github.com/sluice-gitops/sluice/reconcile"
	"github.com/sluice-gitops/sluice/test/gitserver"
)

// TestWatcherSendsOneMessagePerVerdict feeds the watcher the event
// sequences the serial and speculative runners produce and checks what it
// tells.
func TestWatcherSendsOneMessagePerVerdict(t *testing.T) {
	commit := func(n byte) gitrepo.Commit {
		var h plumbing.Hash
		for i := range h {
			h[i] = n
		}
		return gitrepo.Commit{Hash: h, Subject: fmt.Sprintf("bump %d", n), Author: gitrepo.Signature{Name: "Team", Email: "team@example.com"}}
	}
	c1, c2 := commit(1), commit(2)
	verdict := func(gate string, c gitrepo.Commit, v reconcile.Verdict) func(*watcher) {
		return func(w *watcher) {
			w.event(reconcile.Event{Gate: gate, Commit: c, Step: "verdict", Verdict: v, Detail: "render: missing.yaml"})
		}
	}
	ra, rb := commit(0xaa).Hash, commit(0xbb).Hash
	revert := func(gate string, c gitrepo.Commit, rev plumbing.Hash) func(*watcher) {
		return func(w *watcher) {
			w.event(reconcile.Event{Gate: gate, Commit: c, Step: "revert", Detail: rev.String()[:7] + " pushed to main", Revert: rev})
		}
	}
	reverted := func(gate string, c gitrepo.Commit, rev plumbing.Hash) func(*watcher) {
		return func(w *watcher) {
			w.event(reconcile.Event{Gate: gate, Commit: c, Step: "verdict", Verdict: reconcile.Failed, Detail: "render: missing.yaml", Revert: rev})
		}
	}
	drained := func(gate string, err error) func(*watcher) {
		return func(w *watcher) { w.drained(gate, err) }
	}
	stopped := func(reason string) error { return &reconcile.StoppedError{Gate: "staging", Reason: reason} }
	failed := func(gate string, c gitrepo.Commit, rev string) notify.Message {
		return notify.Message{Kind: notify.Failed, Gate: gate, Commit: c.Hash.String(), Subject: c.Subject,
			Author: notify.Person{Name: "Team", Email: "team@example.com"}, Reason: "render: missing.yaml", RevertCommit: rev}
	}
	stop := func(reason string) notify.Message {
		return notify.Message{Kind: notify.Stopped, Gate: "staging", Reason: reason}
	}
	tests := []struct {
		name   string
		events []func(*watcher)
		want   []notify.Message
	}{
		{
			name:   "serial: the verdict, then its revert",
			events: []func(*watcher){verdict("staging", c1, reconcile.Failed), revert("staging", c1, ra), drained("staging", nil)},
			want:   []notify.Message{failed("staging", c1, ra.String())},
		},
		{
			name:   "speculative: the revert, then the verdict",
			events: []func(*watcher){revert("staging", c1, ra), verdict("staging", c1, reconcile.Failed), drained("staging", nil)},
			want:   []notify.Message{failed("staging", c1, ra.String())},
		},
		{
			name:   "the revert, then the verdict that names it",
			events: []func(*watcher){revert("staging", c1, ra), reverted("staging", c1, ra), drained("staging", nil)},
			want:   []notify.Message{failed("staging", c1, ra.String())},
		},
		{
			name:   "a verdict that names its revert is told at once",
			events: []func(*watcher){reverted("staging", c1, ra)},
			want:   []notify.Message{failed("staging", c1, ra.String())},
		},
		{
			name:   "a revert another gate already pushed",
			events: []func(*watcher){verdict("staging", c1, reconcile.Failed), revert("staging", c1, rb), drained("staging", nil)},
			want:   []notify.Message{failed("staging", c1, rb.String())},
		},
		{
			name:   "a gate that does not revert tells when its drain ends",
			events: []func(*watcher){verdict("staging", c1, reconcile.Failed), verdict("staging", c2, reconcile.Passed), drained("staging", nil)},
			want:   []notify.Message{failed("staging", c1, "")},
		},
		{
			name: "a verdict whose revert push failed is tested again and told once, with its revert",
			events: []func(*watcher){
				verdict("staging", c1, reconcile.Failed), drained("staging", errors.New("push revert: connection refused")),
				verdict("staging", c1, reconcile.Failed), revert("staging", c1, ra), drained("staging", nil),
			},
			want: []notify.Message{failed("staging", c1, ra.String())},
		},
		{
			name: "a verdict told once is not told again",
			events: []func(*watcher){
				verdict("staging", c1, reconcile.Failed), revert("staging", c1, ra), drained("staging", errors.New("push notes: timeout")),
				verdict("staging", c1, reconcile.Failed), revert("staging", c1, ra), drained("staging", nil),
			},
			want: []notify.Message{failed("staging", c1, ra.String())},
		},
		{
			name:   "each gate tells its own verdict",
			events: []func(*watcher){verdict("dev", c1, reconcile.Failed), verdict("staging", c1, reconcile.Failed), revert("staging", c1, ra), drained("dev", nil), drained("staging", nil)},
			want:   []notify.Message{failed("staging", c1, ra.String()), failed("dev", c1, "")},
		},
		{
			name:   "passed and error verdicts are not told",
			events: []func(*watcher){verdict("staging", c1, reconcile.Passed), verdict("staging", c2, reconcile.Error), drained("staging", errors.New("apply: connection refused"))},
		},
		{
			name:   "a failure whose revert conflicts is told by the stop",
			events: []func(*watcher){verdict("staging", c1, reconcile.Failed), drained("staging", stopped("reverting conflicts"))},
			want:   []notify.Message{stop("reverting conflicts")},
		},
		{
			name: "a stopped gate is told once per reason, not per retry",
			events: []func(*watcher){
				drained("staging", stopped("moved by someone")), drained("staging", stopped("moved by someone")),
				drained("staging", errors.New("fetch: timeout")), drained("staging", stopped("moved by someone")),
				drained("staging", stopped("not an ancestor")),
				drained("staging", nil), drained("staging", stopped("not an ancestor")),
			},
			want: []notify.Message{stop("moved by someone"), stop("not an ancestor"), stop("not an ancestor")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []notify.Message
			w := newWatcher(func(m notify.Message) { got = append(got, m) })
			for _, e := range tt.events {
				e(w)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("messages (-want +got):\n%s", diff)
			}
		})
	}
}

// hookReceiver records the JSON posts it gets, by path.
type hookReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	posts map[string][]map[string]any
	auth  []string
}

func startHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	r := &hookReceiver{posts: map[string][]map[string]any{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var m map[string]any
		b, _ := io.ReadAll(req.Body)
		if err := json.Unmarshal(b, &m); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.posts[req.URL.Path] = append(r.posts[req.URL.Path], m)
		r.auth = append(r.auth, req.Header.Get("Authorization"))
		r.mu.Unlock()
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *hookReceiver) get(path string) []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]any(nil), r.posts[path]...)
}

// syncBuffer is a log sink the daemon and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRunNotifiesAFailedCommitAndAStoppedGate: the real daemon, a real Git
// server and a local receiver. A commit that does not render is reverted
// and told once to both webhooks, with its author and the revert; a person
// moving the target stops the gate, which is told too; a third webhook that
// always fails changes nothing for the gate. Neither the URLs' secret paths
// nor the token appear in any log line, at debug level.
func TestRunNotifiesAFailedCommitAndAStoppedGate(t *testing.T) {
	f := newRepoFixture(t, gitserver.Options{})
	f.work.Write(t, "environments/staging/kustomization.yaml", "resources:\n  - web.yaml\n  - missing.yaml\n")
	bad := f.work.Commit(t, "add a resource that is not there")
	if err := f.work.Push(t, "HEAD:refs/heads/main"); err != nil {
		t.Fatal(err)
	}
	rcv := startHookReceiver(t)
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) }))
	defer broken.Close()
	const secretPath, token = "/hooks/s3cr3t-path", "s3cr3t-t0ken"
	urlFile := filepath.Join(t.TempDir(), "slack-url")
	writeFile(t, urlFile, rcv.URL+"/slack"+secretPath+"\n")
	t.Setenv("NOTIFY_TEST_URL", rcv.URL+"/json"+secretPath)
	t.Setenv("NOTIFY_TEST_TOKEN", token)
	t.Setenv("NOTIFY_TEST_BROKEN", broken.URL+secretPath)
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	writeFile(t, cfg, fmt.Sprintf("repository:\n  url: %s\npollInterval: 200ms\n", f.srv.RepoURL("desired"))+stagingGate+fmt.Sprintf(`notify:
  - urlEnv: NOTIFY_TEST_URL
    tokenEnv: NOTIFY_TEST_TOKEN
  - urlFile: %s
    format: slack
  - urlEnv: NOTIFY_TEST_BROKEN
    tokenEnv: NOTIFY_TEST_TOKEN
`, urlFile))

	var logs syncBuffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"run", "--config", cfg, "--kubeconfig", f.kubeconfig, "--log-level", "debug"}, io.Discard, &logs)
	}()
	stopped := false
	stopDaemon := func() {
		if !stopped {
			stopped = true
			cancel()
			if code := <-done; code != 0 {
				t.Errorf("the daemon exited %d", code)
			}
		}
	}
	defer stopDaemon()

	waitUntil(t, "the failed commit is told to both webhooks", func() bool {
		return len(rcv.get("/json"+secretPath)) > 0 && len(rcv.get("/slack"+secretPath)) > 0
	})
	f.work.Pull(t)
	revert := strings.TrimSpace(f.work.Git(t, "rev-parse", "origin/main"))
	if subject := strings.TrimSpace(f.work.Git(t, "log", "-1", "--format=%s", revert)); !strings.HasPrefix(subject, "Revert ") {
		t.Fatalf("main's tip is %q, want Sluice's revert", subject)
	}
	got := rcv.get("/json" + secretPath)[0]
	if !strings.Contains(fmt.Sprint(got["reason"]), "missing.yaml") {
		t.Errorf("reason %q does not name the missing file", got["reason"])
	}
	// The runner's events name the revert by its full id.
	rev, _ := got["revertCommit"].(string)
	if rev != revert {
		t.Errorf("revertCommit %q is not main's tip %s", rev, revert)
	}
	delete(got, "revertCommit")
	delete(got, "reason")
	delete(got, "time")
	delete(got, "text")
	want := map[string]any{
		"kind": "failed", "gate": "staging", "commit": bad, "subject": "add a resource that is not there",
		"author": map[string]any{"name": "Test", "email": "test@example.com"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("json payload (-want +got):\n%s", diff)
	}
	slack := rcv.get("/slack" + secretPath)[0]
	if text := fmt.Sprint(slack["text"]); !strings.Contains(text, "commit "+bad[:12]) || !strings.Contains(text, "reverted by "+revert[:12]+".") {
		t.Errorf("slack text %q does not name the commit and its revert", text)
	}

	// A person moves staging: the gate stops, and that is told.
	f.work.Git(t, "push", "-q", "origin", bad+"~1:refs/heads/staging", "--force")
	f.work.Git(t, "commit", "-q", "--allow-empty", "-m", "someone else's commit")
	f.work.Git(t, "push", "-q", "origin", "HEAD:refs/heads/staging", "--force")
	waitUntil(t, "the stopped gate is told", func() bool { return len(rcv.get("/json"+secretPath)) > 1 })
	stopDaemon()

	posts := rcv.get("/json" + secretPath)
	if len(posts) != 2 || posts[1]["kind"] != "stopped" || posts[1]["gate"] != "staging" || !strings.Contains(fmt.Sprint(posts[1]["reason"]), "staging") {
		t.Errorf("json posts %v, want the failed commit once, then the stopped gate", posts)
	}
	if n := len(rcv.get("/slack" + secretPath)); n != 2 {
		t.Errorf("%d slack posts, want 2", n)
	}
	for _, a := range rcv.auth {
		if a != "" && a != "Bearer "+token {
			t.Errorf("Authorization %q", a)
		}
	}
	text := logs.String()
	if !strings.Contains(text, "notification not delivered") || !strings.Contains(text, "notify[2] (127.0.0.1:") {
		t.Errorf("the broken webhook's failure is not logged by name:\n%s", text)
	}
	for _, s := range []string{"s3cr3t"} {
		if strings.Contains(text, s) {
			t.Errorf("a log line holds a secret:\n%s", grepLines(text, s))
		}
	}
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
