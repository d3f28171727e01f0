package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/reconcile"
	"github.com/sluice-gitops/sluice/reconcile/plan"
	"github.com/sluice-gitops/sluice/testenv"
)

// statusGet asks h for path with accept, and returns the code, the
// content type and the body.
func statusGet(t *testing.T, h http.Handler, path, accept string) (int, string, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Header().Get("Content-Type"), rec.Body.String()
}

func hostileCommit(c byte) gitrepo.Commit {
	cm := commitOf(c)
	cm.Subject = `<script>alert("subject")</script>`
	cm.Author = gitrepo.Signature{Name: `<img src=x onerror=alert(1)>`, Email: "mallory@example.com"}
	return cm
}

// TestStatusPageShowsNothingACommitCouldUse: a commit controls its subject,
// its author and, through its tests' output, its reason. On the status page
// all of it is escaped (HTML and JSON), clipped, and stripped of
// credentials in URLs, token parameters and the paths of secret files.
func TestStatusPageShowsNothingACommitCouldUse(t *testing.T) {
	m := newMonitor([]string{"staging"})
	c := hostileCommit(0xab)
	c.Subject += strings.Repeat("x", 5000)
	reason := "tests: job smoke failed: <script>alert('reason')</script>\n" +
		"fetch https://sluice:s3cr3t-pass@git.example.com/org/repo.git?private_token=glpat-abcdef&ref=main\n" +
		"open /var/run/secrets/sluice/git-token: permission denied\n" +
		"Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.payload.signature\n" +
		"\x1b[31mred\x1b[0m\u2028" + strings.Repeat("line\n", 200)
	m.event(reconcile.Event{Gate: "staging", Commit: c, Step: reconcile.StepRender})
	m.event(reconcile.Event{Gate: "staging", Commit: c, Step: "verdict", Verdict: reconcile.Failed, Detail: reason})
	m.drained("staging", &reconcile.StoppedError{Gate: "staging", Reason: "revert conflicts: see https://x:tok@example.com/y and /etc/sluice/token"})
	h := m.handler()
	secrets := []string{"s3cr3t-pass", "glpat-abcdef", "/var/run/secrets", "eyJhbGciOiJSUzI1NiJ9", "\x1b", "\u2028", "x:tok@", "/etc/sluice"}
	for _, path := range []string{"/status", "/status/staging/" + c.Hash.String()} {
		for _, format := range []string{"html", "json"} {
			t.Run(path+" as "+format, func(t *testing.T) {
				code, ctype, body := statusGet(t, h, path+"?format="+format, "")
				if code != http.StatusOK {
					t.Fatalf("GET = %d:\n%s", code, body)
				}
				if want := map[string]string{"html": "text/html", "json": "application/json"}[format]; !strings.HasPrefix(ctype, want) {
					t.Errorf("Content-Type %q, want %s", ctype, want)
				}
				for _, bad := range append(secrets, "<script", "<img") {
					if strings.Contains(body, bad) {
						t.Errorf("the page shows %q:\n%s", bad, body)
					}
				}
				if format == "html" && (!strings.Contains(body, "&lt;script&gt;alert(&#34;subject&#34;)") || !strings.Contains(body, "&lt;img src=x onerror=alert(1)&gt;")) {
					t.Errorf("the page does not show the escaped subject and author:\n%s", body)
				}
				if strings.Contains(body, strings.Repeat("x", maxSubjectLen+1)) || strings.Count(body, "line") > maxReasonLines {
					t.Errorf("subject or reason not clipped: %d bytes", len(body))
				}
				if !strings.Contains(body, "git.example.com/org/repo.git") || !strings.Contains(body, "permission denied") {
					t.Errorf("the reason lost more than the secrets:\n%s", body)
				}
			})
		}
	}
}

// TestStatusPageNotFound: an unknown gate or commit is a 404 with a plain
// message that repeats nothing of the request but a checked hash.
func TestStatusPageNotFound(t *testing.T) {
	m := newMonitor([]string{"staging"})
	known := commitOf(0xaa)
	m.event(reconcile.Event{Gate: "staging", Commit: known, Step: "verdict", Verdict: reconcile.Passed})
	twin := gitrepo.Commit{Hash: plumbing.NewHash("aaaa" + strings.Repeat("b", 36))}
	m.event(reconcile.Event{Gate: "staging", Commit: twin, Step: "verdict", Verdict: reconcile.Passed})
	unknown := strings.Repeat("cd", 20)
	tests := []struct {
		name, path, want string
	}{
		{"an unknown gate", "/status/prod/" + known.Hash.String(), "no such gate"},
		{"a commit the gate never saw", "/status/staging/" + unknown, "gate staging has no verdict, test or queue entry of commit " + unknown},
		{"a prefix two commits share", "/status/staging/aaaa", "no verdict"},
		{"not a hash", "/status/staging/%3Cscript%3E", "not a commit hash"},
		{"a hash too long", "/status/staging/" + unknown + "00", "not a commit hash"},
		{"no commit", "/status/staging", "not a status page"},
		{"a path below a commit", "/status/staging/" + unknown + "/x", "not a status page"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, ctype, body := statusGet(t, m.handler(), tt.path, "application/json")
			if code != http.StatusNotFound || !strings.HasPrefix(ctype, "text/plain") {
				t.Errorf("GET %s = %d %s, want 404 text/plain", tt.path, code, ctype)
			}
			if !strings.Contains(body, tt.want) || strings.Contains(body, "<") {
				t.Errorf("GET %s answers %q, want a plain message saying %q", tt.path, body, tt.want)
			}
		})
	}
	// A unique prefix is a commit the gate saw.
	if code, _, body := statusGet(t, m.handler(), "/status/staging/"+known.Hash.String()[:10], ""); code != http.StatusOK {
		t.Errorf("GET by a unique prefix = %d %s", code, body)
	}
}

// TestStatusPageJSON: what machines read, for each kind of commit: judged
// alone and passed, failed speculatively and reverted, failed in a batch
// with a long reason, under test after an error, queued (from the queue),
// and found in the verified notes; and each gate's branches, tip, queue,
// state and what it tests.
func TestStatusPageJSON(t *testing.T) {
	a, b, c, d, e := commitOf(0xaa), commitOf(0xbb), commitOf(0xcc), commitOf(0xdd), commitOf(0xee)
	queued, noted := strings.Repeat("11", 20), strings.Repeat("22", 20)
	a.Subject, a.Author.Name = "bump web", "Ada"
	m := newMonitor([]string{"shared-dev", "staging"})
	m.status.useRepository(nil, nil, "main", []reconcile.Gate{
		{Name: "shared-dev", Path: "environments/shared-dev", Target: "shared-dev"},
		{Name: "staging", Path: "environments/staging", Target: "staging", Strategy: plan.Speculative},
	})
	m.status.branches = func(_ context.Context, target string) (string, []string, error) {
		if target == "shared-dev" {
			return "", nil, fmt.Errorf("queue: open /var/lib/sluice/cache: %w", gitrepo.ErrNotAncestor)
		}
		return e.Hash.String(), []string{d.Hash.String(), queued}, nil
	}
	m.status.lookup = func(_ context.Context, gate string, h plumbing.Hash) (commitView, bool, error) {
		if gate != "staging" || h.String() != noted {
			return commitView{}, false, nil
		}
		return commitView{Gate: gate, SHA: noted, Verdict: "passed", Judged: "alone", Took: "3s", From: "notes"}, true, nil
	}
	long := strings.Repeat("apply: refused\n", 5) + "… (7 more lines)"
	for _, ev := range []reconcile.Event{
		{Gate: "staging", Commit: a, Step: reconcile.StepRender},
		{Gate: "staging", Commit: a, Step: "verdict", Verdict: reconcile.Passed, Took: 2 * time.Second},
		{Gate: "staging", Commit: b, Step: "revert", Revert: e.Hash},
		{Gate: "staging", Commit: b, Step: "verdict", Verdict: reconcile.Failed, Revert: e.Hash,
			Detail: "health: web not ready\n(judged speculatively, behind 1 commit not yet judged)"},
		{Gate: "staging", Commit: c, Step: "verdict", Verdict: reconcile.Failed, Detail: long},
		{Gate: "staging", Commit: e, Step: "fast-forward"},
		{Gate: "staging", Commit: d, Step: testenv.StepApply},
		{Gate: "staging", Commit: d, Step: "verdict", Verdict: reconcile.Error, Detail: "apply: connection refused"},
		{Gate: "staging", Commit: d, Step: reconcile.StepRender},
		{Gate: "staging", Commit: d, Step: testenv.StepHealth},
		{Gate: "shared-dev", Commit: c, Step: "verdict", Verdict: reconcile.Passed, Detail: "renders the same objects as the last passed candidate"},
	} {
		m.event(ev)
	}
	m.drained("shared-dev", &reconcile.StoppedError{Gate: "shared-dev", Reason: "target branch shared-dev was moved outside Sluice"})
	h := m.handler()

	code, _, body := statusGet(t, h, "/status", "application/json")
	if code != http.StatusOK {
		t.Fatalf("GET /status = %d", code)
	}
	var page statusPage
	if err := json.Unmarshal([]byte(body), &page); err != nil {
		t.Fatalf("%v:\n%s", err, body)
	}
	two := 2
	pending := func(cm gitrepo.Commit, step, reason string) commitView {
		return commitView{Gate: "staging", SHA: cm.Hash.String(), Verdict: "pending", Step: step, Reason: reason, From: "events"}
	}
	want := statusPage{Source: "main", Gates: []gateView{
		{Name: "shared-dev", Path: "environments/shared-dev", Source: "main", Target: "shared-dev",
			QueueError: "queue: open [path]: " + gitrepo.ErrNotAncestor.Error(),
			State:      "stopped", Reason: "target branch shared-dev was moved outside Sluice", Testing: []commitView{},
			Recent: []commitView{{Gate: "shared-dev", SHA: c.Hash.String(), Verdict: "passed", Judged: "alone",
				Reason: "renders the same objects as the last passed candidate", From: "events"}}},
		{Name: "staging", Path: "environments/staging", Source: "main", Target: "staging", TargetTip: e.Hash.String(), Queue: &two,
			State:   "not drained yet",
			Testing: []commitView{pending(d, "health", "the last test ended in an error (it is tested again): apply: connection refused")},
			Recent: []commitView{
				pending(d, "health", "the last test ended in an error (it is tested again): apply: connection refused"),
				{Gate: "staging", SHA: c.Hash.String(), Verdict: "failed", Reason: long, From: "events"},
				{Gate: "staging", SHA: b.Hash.String(), Verdict: "failed", Reason: "health: web not ready", Judged: "speculatively",
					JudgedDetail: "behind 1 commit not yet judged", Revert: e.Hash.String(), From: "events"},
				{Gate: "staging", SHA: a.Hash.String(), Subject: "bump web", Author: "Ada", Verdict: "passed", Took: "2s", From: "events"},
			}},
	}}
	ignore := cmpopts.IgnoreFields(commitView{}, "At")
	if diff := cmp.Diff(want, page, ignore, cmpopts.IgnoreFields(gateView{}, "LastDrain"),
		cmpopts.SortSlices(func(x, y commitView) bool { return x.SHA < y.SHA })); diff != "" {
		t.Errorf("/status (-want +got):\n%s", diff)
	}
	if page.Gates[0].LastDrain == nil || page.Gates[1].LastDrain != nil {
		t.Errorf("lastDrain: shared-dev %v, staging %v; want only shared-dev's", page.Gates[0].LastDrain, page.Gates[1].LastDrain)
	}
	for _, v := range page.Gates[1].Recent {
		if v.At == nil {
			t.Errorf("%s has no time", v.SHA)
		}
	}

	commits := []struct {
		name, sha string
		want      commitView
	}{
		{"failed speculatively and reverted", b.Hash.String(), want.Gates[1].Recent[2]},
		{"under test again after an error", d.Hash.String(), want.Gates[1].Testing[0]},
		{"queued, never seen", queued, commitView{Gate: "staging", SHA: queued, Verdict: "pending", Step: "queued", From: "queue"}},
		{"in the verified notes", noted, commitView{Gate: "staging", SHA: noted, Verdict: "passed", Judged: "alone", Took: "3s", From: "notes"}},
	}
	for _, tt := range commits {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := statusGet(t, h, "/status/staging/"+tt.sha+"?format=json", "text/html")
			if code != http.StatusOK {
				t.Fatalf("GET = %d %s", code, body)
			}
			var got commitView
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("%v:\n%s", err, body)
			}
			if diff := cmp.Diff(tt.want, got, ignore); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if _, ctype, _ := statusGet(t, h, "/status/staging/"+b.Hash.String(), "text/html,application/json;q=0.9"); !strings.HasPrefix(ctype, "text/html") {
		t.Errorf("a browser gets %s, want HTML", ctype)
	}
}

// TestStatusStoreIsBounded: a gate remembers its last maxStatusCommits
// commits; older ones are answered 404 (or from the notes).
func TestStatusStoreIsBounded(t *testing.T) {
	m := newMonitor([]string{"staging", "prod"})
	hashOf := func(i int) plumbing.Hash { return plumbing.NewHash(fmt.Sprintf("%040x", i+1)) }
	const extra = 7
	for i := range maxStatusCommits + extra {
		m.event(reconcile.Event{Gate: "staging", Commit: gitrepo.Commit{Hash: hashOf(i)}, Step: "verdict", Verdict: reconcile.Passed})
	}
	m.event(reconcile.Event{Gate: "prod", Commit: gitrepo.Commit{Hash: hashOf(0)}, Step: "verdict", Verdict: reconcile.Passed})
	m.status.mu.Lock()
	got := len(m.status.gates["staging"].commits)
	m.status.mu.Unlock()
	if got != maxStatusCommits {
		t.Errorf("staging remembers %d commits, want %d", got, maxStatusCommits)
	}
	h := m.handler()
	for _, tt := range []struct {
		gate string
		i    int
		want int
	}{
		{"staging", 0, http.StatusNotFound},
		{"staging", extra - 1, http.StatusNotFound},
		{"staging", extra, http.StatusOK},
		{"staging", maxStatusCommits + extra - 1, http.StatusOK},
		{"prod", 0, http.StatusOK}, // bounded per gate
	} {
		if code, _, _ := statusGet(t, h, "/status/"+tt.gate+"/"+hashOf(tt.i).String(), ""); code != tt.want {
			t.Errorf("commit %d of %s = %d, want %d", tt.i, tt.gate, code, tt.want)
		}
	}
	if _, _, body := statusGet(t, h, "/status?format=json", ""); strings.Count(body, `"sha"`) != maxRecentShown+1 {
		t.Errorf("/status lists %d commits, want %d", strings.Count(body, `"sha"`), maxRecentShown+1)
	}
}

func TestSplitJudged(t *testing.T) {
	tests := []struct {
		name, detail, reason, how, more string
	}{
		{"no judged line", "health: web not ready", "health: web not ready", "", ""},
		{"speculatively", "health: x\n(judged speculatively, behind 2 commits not yet judged)", "health: x", "speculatively", "behind 2 commits not yet judged"},
		{"in a batch", "tests: y\n(judged in a batch of 4)", "tests: y", "in a batch", "of 4"},
		{"alone without a test", "(judged alone, without a test (it renders the same objects as a tested candidate))", "", "alone", "without a test (it renders the same objects as a tested candidate)"},
		{"by its revert", "reverted\n(judged by the revert commit Sluice pushed for it)", "reverted", "by its revert", ""},
		{"a commit's own text is no judged line", "(judged alone) says my test", "(judged alone) says my test", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reason, how, more := splitJudged(tt.detail)
			if diff := cmp.Diff([]string{tt.reason, tt.how, tt.more}, []string{reason, how, more}); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestStatusPageWithABusyRepository: a repository that does not answer in
// time leaves the queue unknown (not empty), and requests that follow do
// not ask it again before statusRefresh.
func TestStatusPageWithABusyRepository(t *testing.T) {
	m := newMonitor([]string{"staging"})
	m.status.useRepository(nil, nil, "main", []reconcile.Gate{{Name: "staging", Target: "staging"}})
	m.status.timeout = 10 * time.Millisecond
	asked := 0
	m.status.branches = func(ctx context.Context, _ string) (string, []string, error) {
		asked++
		<-ctx.Done()
		return "", nil, ctx.Err()
	}
	for range 3 {
		code, _, body := statusGet(t, m.handler(), "/status?format=json", "")
		if code != http.StatusOK || strings.Contains(body, "queueLength") {
			t.Errorf("GET /status = %d, want 200 without a queue length:\n%s", code, body)
		}
	}
	if asked != 1 {
		t.Errorf("the repository was asked %d times, want once", asked)
	}
}
