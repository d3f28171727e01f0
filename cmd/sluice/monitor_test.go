package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-gitops/sluice/reconcile"
	"github.com/sluice-gitops/sluice/test/gitserver"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func TestMonitorReadinessFollowsTheGates(t *testing.T) {
	m := newMonitor([]string{"shared-dev", "staging"})
	h := m.handler()
	if code, _ := get(t, h, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200", code)
	}
	if code, body := get(t, h, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not drained yet") {
		t.Errorf("/readyz before any drain = %d %q, want 503 saying not drained yet", code, body)
	}
	m.drained("shared-dev", nil)
	m.drained("staging", nil)
	if code, _ := get(t, h, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after both drained = %d, want 200", code)
	}
	m.drained("staging", &reconcile.StoppedError{Gate: "staging", Reason: "target branch staging was moved outside Sluice\nsecond line"})
	code, body := get(t, h, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "gate staging: stopped: ") || strings.Contains(body, "second line") || strings.Contains(body, "shared-dev") {
		t.Errorf("/readyz with staging stopped = %d %q, want 503 naming only staging, one line", code, body)
	}
	m.drained("staging", errors.New("fetch: connection refused"))
	if _, body := get(t, h, "/readyz"); !strings.Contains(body, "gate staging: retrying: fetch: connection refused") {
		t.Errorf("/readyz with staging retrying = %q", body)
	}
	if _, body := get(t, h, "/metrics"); !strings.Contains(body, `sluice_gate_up{gate="shared-dev"} 1`) || !strings.Contains(body, `sluice_gate_up{gate="staging"} 0`) {
		t.Errorf("/metrics gate_up:\n%s", grepLines(body, "sluice_gate_up"))
	}
}

// TestRunServesHealthAndMetrics: the daemon with --listen reports its
// verdicts, reverts and fast-forwards as Prometheus metrics, and /readyz
// turns 503 when a person moves the target branch and the gate stops.
func TestRunServesHealthAndMetrics(t *testing.T) {
	f := newRepoFixture(t, gitserver.Options{})
	initial := strings.TrimSpace(f.work.Git(t, "rev-parse", "HEAD"))
	f.work.Write(t, "environments/staging/kustomization.yaml", "resources:\n  - web.yaml\n  - missing.yaml\n")
	bad := f.work.Commit(t, "add a resource that is not there <b>")
	if err := f.work.Push(t, "HEAD:refs/heads/main"); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	writeFile(t, cfg, fmt.Sprintf("repository:\n  url: %s\npollInterval: 200ms\n", f.srv.RepoURL("desired"))+stagingGate)
	addr := freeAddr(t)

	startDaemon(t, "--config", cfg, "--kubeconfig", f.kubeconfig, "--listen", addr)

	base := "http://" + addr
	waitFor(t, base+"/metrics", func(code int, body string) bool {
		return strings.Contains(body, `sluice_verdicts_total{gate="staging",verdict="failed"} 1`) &&
			strings.Contains(body, `sluice_reverts_total{gate="staging"} 1`) &&
			strings.Contains(body, `sluice_fast_forwards_total{gate="staging"} 1`) &&
			strings.Contains(body, `sluice_gate_up{gate="staging"} 1`)
	})
	waitFor(t, base+"/readyz", func(code int, body string) bool { return code == http.StatusOK })
	if code, _ := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	// The status page tells the failed commit from the events, and the
	// commit an earlier run passed from its verified note.
	for _, tt := range []struct{ sha, want string }{
		{bad, `"verdict": "failed"`},
		{bad, `"subject": "add a resource that is not there \u003cb\u003e"`},
		{bad, `"revertCommit": "`},
		{bad, `"from": "events"`},
		{initial, `"verdict": "passed"`},
		{initial, `"from": "notes"`},
	} {
		if code, body := httpGet(t, base+"/status/staging/"+tt.sha+"?format=json"); code != http.StatusOK || !strings.Contains(body, tt.want) {
			t.Errorf("/status/staging/%s = %d, does not say %s:\n%s", tt.sha, code, tt.want, body)
		}
	}
	if code, body := httpGet(t, base+"/status"); code != http.StatusOK || !strings.Contains(body, "add a resource that is not there &lt;b&gt;") {
		t.Errorf("/status = %d, does not show the failed commit:\n%s", code, body)
	}

	// A person moves staging: the gate stops, and readiness says so.
	f.work.Pull(t)
	f.work.Git(t, "push", "-q", "origin", "HEAD~1:refs/heads/staging", "--force")
	waitFor(t, base+"/readyz", func(code int, body string) bool {
		return code == http.StatusServiceUnavailable && strings.Contains(body, "gate staging: stopped: ")
	})
}

// startDaemon runs `sluice run` with args in-process until the test ends,
// then checks that it stopped cleanly.
func startDaemon(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int)
	go func() {
		done <- run(ctx, append([]string{"run"}, args...), io.Discard, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("the daemon exited %d", code)
		}
	})
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor polls url until ok says yes, for at most a minute.
func waitFor(t *testing.T, url string, ok func(code int, body string) bool) {
	t.Helper()
	var code int
	var body string
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if code, body = httpGet(t, url); ok(code, body) {
			return
		}
	}
	t.Fatalf("%s never got there; last answer %d:\n%s", url, code, grepLines(body, "sluice_"))
}

func grepLines(s, substr string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, substr) {
			out = append(out, strings.TrimRight(line, "\n"))
		}
	}
	return strings.Join(out, "\n")
}

// TestTriggerWakesTheGatesThisReplicaLeads: POST /trigger drains now the
// gates this process leads, and says which; with --leader-elect a gate
// another replica leads is not woken here (its drain would not start: the
// wake would only wait for a lease this replica may win much later).
func TestTriggerWakesTheGatesThisReplicaLeads(t *testing.T) {
	tests := []struct {
		name       string
		daemon     bool
		lead       map[string]bool // nil: no --leader-elect
		wantCode   int
		wantWoken  []string
		wantAnswer []string
	}{
		{name: "not a daemon", wantCode: http.StatusConflict, wantAnswer: []string{"not running as a daemon"}},
		{name: "without leader election every gate", daemon: true, wantCode: http.StatusAccepted,
			wantWoken: []string{"shared-dev", "staging"}, wantAnswer: []string{"draining now: shared-dev, staging"}},
		{name: "a replica that leads one gate wakes that one", daemon: true, lead: map[string]bool{"staging": true, "shared-dev": false},
			wantCode: http.StatusAccepted, wantWoken: []string{"staging"},
			wantAnswer: []string{"draining now: staging", "led by another replica: shared-dev"}},
		{name: "a replica that leads none wakes none", daemon: true, lead: map[string]bool{"staging": false, "shared-dev": false},
			wantCode: http.StatusOK, wantAnswer: []string{"leads no gate now", "led by another replica: shared-dev, staging"}},
		{name: "a replica that leads both wakes both", daemon: true, lead: map[string]bool{"staging": true, "shared-dev": true},
			wantCode: http.StatusAccepted, wantWoken: []string{"shared-dev", "staging"}, wantAnswer: []string{"draining now: shared-dev, staging"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMonitor([]string{"shared-dev", "staging"})
			var woken []string
			if tt.daemon {
				m.wake = func(gates ...string) { woken = append(woken, gates...) }
			}
			for _, g := range []string{"shared-dev", "staging"} {
				if lead, ok := tt.lead[g]; ok {
					m.lead(g) // every replica leads a gate at some point
					if !lead {
						m.follow(g)
					}
				}
			}
			rec := httptest.NewRecorder()
			m.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/trigger", strings.NewReader(`{"ref":"refs/heads/main"}`)))
			if rec.Code != tt.wantCode {
				t.Errorf("POST /trigger = %d, want %d", rec.Code, tt.wantCode)
			}
			if diff := cmp.Diff(tt.wantWoken, woken); diff != "" {
				t.Errorf("gates woken (-want +got):\n%s", diff)
			}
			for _, want := range tt.wantAnswer {
				if !strings.Contains(rec.Body.String(), want) {
					t.Errorf("answer %q does not say %q", rec.Body.String(), want)
				}
			}
		})
	}
	if code, _ := get(t, newMonitor(nil).handler(), "/trigger"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /trigger = %d, want 405", code)
	}
}

// TestTriggerDrainsNow: with a poll interval of an hour, a push is picked
// up at once when the forge's webhook posts to /trigger.
func TestTriggerDrainsNow(t *testing.T) {
	f := newRepoFixture(t, gitserver.Options{})
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	writeFile(t, cfg, fmt.Sprintf("repository:\n  url: %s\npollInterval: 1h\n", f.srv.RepoURL("desired"))+stagingGate)
	addr := freeAddr(t)
	startDaemon(t, "--config", cfg, "--kubeconfig", f.kubeconfig, "--listen", addr)
	base := "http://" + addr
	waitFor(t, base+"/readyz", func(code int, body string) bool { return code == http.StatusOK })

	f.work.Write(t, "README.md", "docs only\n")
	sha := f.work.Commit(t, "docs")
	if err := f.work.Push(t, "HEAD:refs/heads/main"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(base+"/trigger", "application/json", strings.NewReader(`{"ref":"refs/heads/main"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /trigger = %d", resp.StatusCode)
	}
	waitFor(t, base+"/metrics", func(code int, body string) bool {
		return strings.Contains(body, `sluice_fast_forwards_total{gate="staging"} 1`)
	})
	if got := f.work.Git(t, "ls-remote", "origin", "refs/heads/staging"); !strings.HasPrefix(got, sha) {
		t.Errorf("staging on the server = %q, want %s", got, sha)
	}
}
