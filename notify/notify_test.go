package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// receiver is a local webhook receiver that answers with the codes it is
// given, in turn (then 200), and records what it got.
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	codes   []int
	bodies  []string
	headers []http.Header
}

func newReceiver(t *testing.T, codes ...int) *receiver {
	t.Helper()
	r := &receiver{codes: codes}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, string(b))
		r.headers = append(r.headers, req.Header.Clone())
		code := http.StatusOK
		if len(r.codes) > 0 {
			code, r.codes = r.codes[0], r.codes[1:]
		}
		r.mu.Unlock()
		if code == http.StatusFound {
			http.Redirect(w, req, "http://example.invalid/elsewhere", code)
			return
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) got() ([]string, []http.Header) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...), append([]http.Header(nil), r.headers...)
}

// collect runs n until every message is reported (or close gives up) and
// returns the reports.
type collector struct {
	mu      sync.Mutex
	reports []Report
}

func (c *collector) report(r Report) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reports = append(c.reports, r)
}

func (c *collector) all() []Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Report(nil), c.reports...)
}

func fastOptions(c *collector) Options {
	return Options{Attempts: 4, InitialBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, Timeout: 30 * time.Second, QueueSize: 10, Report: c.report}
}

func closeNow(t *testing.T, n *Notifier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

var when = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

var failedMsg = Message{
	Kind: Failed, Gate: "staging", Commit: "b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4",
	Subject: "bump B to v4 <!channel>", Author: Person{Name: "London Team", Email: "london@example.com"},
	Reason: "tests: job a-contract failed: A & B disagree", RevertCommit: "abcdefabcdef", Time: when,
}

var stoppedMsg = Message{
	Kind: Stopped, Gate: "staging", Reason: "staging was moved by someone else; put it back", Time: when,
}

func TestPayloadShapes(t *testing.T) {
	tests := []struct {
		name   string
		format Format
		msg    Message
		want   map[string]any
	}{
		{
			name: "json says everything about a failed commit", format: JSON, msg: failedMsg,
			want: map[string]any{
				"kind": "failed", "gate": "staging", "commit": failedMsg.Commit, "subject": "bump B to v4 <!channel>",
				"author": map[string]any{"name": "London Team", "email": "london@example.com"},
				"reason": failedMsg.Reason, "revertCommit": "abcdefabcdef", "time": "2026-12-01T10:00:00Z",
				"text": "Sluice gate staging: commit b4b4b4b4b4b4 \"bump B to v4 <!channel>\" by London Team <london@example.com> failed and was reverted by abcdefabcdef.\nReason: tests: job a-contract failed: A & B disagree",
			},
		},
		{
			name: "json of a stopped gate has no commit", format: JSON, msg: stoppedMsg,
			want: map[string]any{
				"kind": "stopped", "gate": "staging", "reason": stoppedMsg.Reason, "time": "2026-12-01T10:00:00Z",
				"text": "Sluice gate staging stopped and needs a person.\nReason: " + stoppedMsg.Reason,
			},
		},
		{
			name: "slack text escapes what a commit controls", format: Slack, msg: failedMsg,
			want: map[string]any{
				"text": "Sluice gate staging: commit b4b4b4b4b4b4 \"bump B to v4 &lt;!channel&gt;\" by London Team &lt;london@example.com&gt; failed and was reverted by abcdefabcdef.\nReason: tests: job a-contract failed: A &amp; B disagree",
			},
		},
		{
			name: "slack text of a stopped gate", format: Slack, msg: stoppedMsg,
			want: map[string]any{"text": "Sluice gate staging stopped and needs a person.\nReason: " + stoppedMsg.Reason},
		},
		{
			name: "a failed commit without a revert says nothing of one", format: Slack,
			msg:  Message{Kind: Failed, Gate: "dev", Commit: "c1", Subject: "s", Reason: "r", Time: when},
			want: map[string]any{"text": "Sluice gate dev: commit c1 \"s\" by unknown failed.\nReason: r"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := newReceiver(t)
			var c collector
			n := New([]Webhook{{Name: "r", URL: rcv.URL, Format: tt.format}}, fastOptions(&c))
			n.Notify(tt.msg)
			closeNow(t, n)
			bodies, headers := rcv.got()
			if len(bodies) != 1 {
				t.Fatalf("receiver got %d posts, want 1", len(bodies))
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(bodies[0]), &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("payload (-want +got):\n%s", diff)
			}
			if ct := headers[0].Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

func TestDelivery(t *testing.T) {
	tests := []struct {
		name         string
		codes        []int // the receiver's answers, in turn
		wantPosts    int
		wantAttempts int
		wantErr      string
	}{
		{name: "accepted at once", wantPosts: 1, wantAttempts: 1},
		{name: "retried on 500 until accepted", codes: []int{500, 503, 500}, wantPosts: 4, wantAttempts: 4},
		{name: "retried on 429", codes: []int{429}, wantPosts: 2, wantAttempts: 2},
		{name: "given up after the attempts", codes: []int{500, 500, 500, 500, 500}, wantPosts: 4, wantAttempts: 4, wantErr: "gave up after 4 attempts: receiver answered 500 Internal Server Error"},
		{name: "a 4xx is final", codes: []int{404}, wantPosts: 1, wantAttempts: 1, wantErr: "receiver answered 404 Not Found"},
		{name: "a redirect is not followed", codes: []int{302}, wantPosts: 1, wantAttempts: 1, wantErr: "receiver answered 302 Found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := newReceiver(t, tt.codes...)
			var c collector
			n := New([]Webhook{{Name: "r", URL: rcv.URL}}, fastOptions(&c))
			n.Notify(stoppedMsg)
			closeNow(t, n)
			bodies, _ := rcv.got()
			if len(bodies) != tt.wantPosts {
				t.Errorf("receiver got %d posts, want %d", len(bodies), tt.wantPosts)
			}
			for _, b := range bodies[1:] {
				if b != bodies[0] {
					t.Errorf("a retry posted another body:\n%s\n%s", bodies[0], b)
				}
			}
			reports := c.all()
			if len(reports) != 1 {
				t.Fatalf("%d reports, want 1: %+v", len(reports), reports)
			}
			r := reports[0]
			gotErr := ""
			if r.Err != nil {
				gotErr = r.Err.Error()
			}
			if r.Attempts != tt.wantAttempts || gotErr != tt.wantErr {
				t.Errorf("report: %d attempts, error %q; want %d, %q", r.Attempts, gotErr, tt.wantAttempts, tt.wantErr)
			}
		})
	}
}

func TestTokenHeaderAndKinds(t *testing.T) {
	rcv := newReceiver(t)
	var c collector
	n := New([]Webhook{
		{Name: "bearer", URL: rcv.URL + "/bearer", Token: "t0ken-1", On: []Kind{Failed}},
		{Name: "custom", URL: rcv.URL + "/custom", Token: "t0ken-2", Header: "X-Gitlab-Token", On: []Kind{Stopped}},
		{Name: "none", URL: rcv.URL + "/none"},
	}, fastOptions(&c))
	n.Notify(failedMsg)
	n.Notify(stoppedMsg)
	closeNow(t, n)
	_, headers := rcv.got()
	var got []string
	for _, h := range headers {
		got = append(got, fmt.Sprintf("auth=%q gitlab=%q", h.Get("Authorization"), h.Get("X-Gitlab-Token")))
	}
	want := map[string]int{
		`auth="Bearer t0ken-1" gitlab=""`: 1, // failed only
		`auth="" gitlab="t0ken-2"`:        1, // stopped only
		`auth="" gitlab=""`:               2, // both
	}
	count := map[string]int{}
	for _, g := range got {
		count[g]++
	}
	if diff := cmp.Diff(want, count); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
}

// A receiver that never answers costs the caller nothing: Notify returns
// at once, the queue keeps the newest messages and drops the oldest, and
// Close gives up when its context ends.
func TestHangingReceiverDoesNotBlock(t *testing.T) {
	release := make(chan struct{})
	var arrived sync.Once
	first := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // then the server notices a client that gives up
		arrived.Do(func() { close(first) })
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	var c collector
	opts := fastOptions(&c)
	opts.Timeout = time.Hour // only Close bounds the hung post
	n := New([]Webhook{{Name: "hung", URL: srv.URL}}, opts)

	n.Notify(Message{Kind: Stopped, Gate: "g", Reason: "0"})
	<-first // the sender is stuck in its first post
	const sent = 1000
	for i := 1; i < sent; i++ {
		n.Notify(Message{Kind: Stopped, Gate: "g", Reason: fmt.Sprint(i)})
	}
	// One in flight, QueueSize waiting, the rest dropped oldest first.
	drops := c.all()
	if want := sent - 1 - opts.QueueSize; len(drops) != want || drops[len(drops)-1].Dropped != want {
		t.Fatalf("%d drop reports, last count %d; want %d", len(drops), drops[len(drops)-1].Dropped, want)
	}
	if drops[0].Message.Reason != "1" || drops[len(drops)-1].Message.Reason != fmt.Sprint(sent-1-opts.QueueSize) {
		t.Errorf("dropped %q … %q, want the oldest waiting ones", drops[0].Message.Reason, drops[len(drops)-1].Message.Reason)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close = %v, want context.Canceled", err)
	}
	reports := c.all()[len(drops):]
	if len(reports) != 1 || reports[0].Message.Reason != "0" || reports[0].Err == nil {
		t.Errorf("after Close: %+v; want the hung message reported undelivered", reports)
	}
	n.Notify(stoppedMsg) // after Close: nothing, no panic
}

// Neither a report's error nor the webhook's printed forms hold the URL's
// secret path or the token, whatever goes wrong.
func TestNoSecretInReports(t *testing.T) {
	const secretPath, token = "/services/T000/B000/s3cr3tPath", "s3cr3tT0ken"
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // connection refused
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	}))
	defer hung.Close()
	failing := newReceiver(t, 500, 500, 500, 500, 401)

	var c collector
	opts := fastOptions(&c)
	opts.Timeout = 50 * time.Millisecond // the hung receiver times out
	hooks := []Webhook{
		{Name: "dead", URL: deadURL + secretPath, Token: token},
		{Name: "hung", URL: hung.URL + secretPath, Token: token, Header: "X-Token"},
		{Name: "failing", URL: failing.URL + secretPath + "?token=" + token, Token: token},
		{Name: "bad", URL: "http://[::1" + secretPath, Token: token},
	}
	n := New(hooks, opts)
	n.Notify(failedMsg)
	closeNow(t, n)
	reports := c.all()
	if len(reports) != len(hooks) {
		t.Fatalf("%d reports, want %d", len(reports), len(hooks))
	}
	for _, r := range reports {
		if r.Webhook == "bad" && r.Attempts != 1 {
			t.Errorf("a URL that does not parse was tried %d times, want once", r.Attempts)
		}
	}
	for _, r := range reports {
		if r.Err == nil {
			t.Errorf("%s: delivered, want an error", r.Webhook)
			continue
		}
		for _, s := range []string{fmt.Sprint(r), fmt.Sprintf("%+v", r), fmt.Sprintf("%#v", r.Err), r.Err.Error()} {
			if strings.Contains(s, "s3cr3t") {
				t.Errorf("%s: a secret in %q", r.Webhook, s)
			}
		}
	}
	for _, h := range hooks {
		for _, s := range []string{fmt.Sprint(h), fmt.Sprintf("%v %+v %#v %s", h, h, h, h)} {
			if strings.Contains(s, "s3cr3t") {
				t.Errorf("a secret in %q", s)
			}
		}
	}
}
