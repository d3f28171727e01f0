// Package gitserver runs a real Git server for tests: git's own smart-HTTP
// backend (git http-backend) behind net/http/cgi on a loopback listener, with
// optional basic auth, server-side hooks and a switch that simulates an outage.
// StartSSH serves the same repositories over SSH, with public-key auth.
//
// It also drives working clones with the git CLI, so a test can act as a team
// pushing commits while the code under test talks to the same server with go-git.
// Every git process it starts is hermetic: the host's git configuration,
// credentials and GIT_* environment never reach it.
//
// It is a test harness only; nothing outside tests should import it.
package gitserver

import (
	"crypto/subtle"
	"log"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

// Options configure a Server.
type Options struct {
	// Username and Password turn on HTTP basic auth for every request.
	// Both empty means no auth.
	Username, Password string
}

// Server is a running Git smart-HTTP server. Its repositories are bare
// repositories under Root, served at URL + "/" + name + ".git".
type Server struct {
	// URL is the server's base URL, http://127.0.0.1:port, without a trailing slash.
	URL string
	// Root is the directory holding the bare repositories.
	Root string

	opts    Options
	backend *cgi.Handler // shared, never mutated after Start
	env     env          // for server-side git commands run by the harness
	client  env          // for git commands run by Work

	available atomic.Bool
	requests  atomic.Int64
}

// Start starts a server on 127.0.0.1 with an ephemeral port. The server is
// stopped and its directories are removed when t's cleanup runs.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	backendPath := filepath.Join(gitExecPath(t), "git-http-backend")
	if _, err := os.Stat(backendPath); err != nil {
		t.Fatalf("gitserver: git http-backend not found: %v", err)
	}

	base := t.TempDir() // registered before the server's Close, so removed after it
	s := &Server{
		Root: filepath.Join(base, "repos"),
		opts: opts,
	}
	s.env = newEnv(t, filepath.Join(base, "server-home"), serverConfig)
	s.client = newEnv(t, filepath.Join(base, "client-home"), clientConfig)
	if err := os.MkdirAll(s.Root, 0o755); err != nil {
		t.Fatal(err)
	}
	s.available.Store(true)

	stderr := &logWriter{t: t, prefix: "gitserver: git http-backend: "}
	s.backend = &cgi.Handler{
		Path: backendPath,
		Dir:  s.Root,
		// The CGI child gets only PATH, the dynamic loader variables and
		// these, so the host's git configuration cannot leak in.
		Env: append([]string{
			"GIT_PROJECT_ROOT=" + s.Root,
			"GIT_HTTP_EXPORT_ALL=1",
		}, s.env.vars...),
		Stderr: stderr,
		Logger: log.New(stderr, "", 0),
	}

	srv := httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// SetAvailable switches the server on and off. While off, every request is
// answered with 503 Service Unavailable, as during an outage.
func (s *Server) SetAvailable(ok bool) { s.available.Store(ok) }

// Requests returns the number of HTTP requests the server has received,
// including those refused for auth or unavailability.
func (s *Server) Requests() int64 { return s.requests.Load() }

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	if !s.available.Load() {
		http.Error(w, "gitserver: unavailable", http.StatusServiceUnavailable)
		return
	}

	backend := s.backend
	if s.authEnabled() {
		user, pass, ok := r.BasicAuth()
		if !ok || !s.validCredentials(user, pass) {
			w.Header().Set("WWW-Authenticate", `Basic realm="gitserver"`)
			http.Error(w, "gitserver: authentication required", http.StatusUnauthorized)
			return
		}
		// http-backend uses REMOTE_USER to allow receive-pack and for reflogs.
		h := *backend
		h.Env = append(slices.Clip(h.Env), "REMOTE_USER="+user)
		backend = &h
	}

	// git sends request bodies larger than http.postBuffer (1 MiB by default)
	// chunked, and net/http/cgi refuses chunked bodies with 400. The body is
	// already de-chunked by net/http, so hand it on as a plain stream: with
	// CONTENT_LENGTH unset, http-backend reads it to EOF.
	if len(r.TransferEncoding) > 0 {
		r = r.Clone(r.Context())
		r.TransferEncoding = nil
	}
	backend.ServeHTTP(w, r)
}

func (s *Server) authEnabled() bool { return s.opts.Username != "" || s.opts.Password != "" }

func (s *Server) validCredentials(user, pass string) bool {
	userOK := subtle.ConstantTimeCompare([]byte(user), []byte(s.opts.Username)) == 1
	passOK := subtle.ConstantTimeCompare([]byte(pass), []byte(s.opts.Password)) == 1
	return userOK && passOK
}

// logWriter sends each line written to it to t.Log.
type logWriter struct {
	t      testing.TB
	prefix string
}

func (w *logWriter) Write(p []byte) (int, error) {
	for line := range strings.Lines(string(p)) {
		w.t.Log(w.prefix + strings.TrimRight(line, "\n"))
	}
	return len(p), nil
}
