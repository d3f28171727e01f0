package gitserver

import (
	"encoding/base64"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Work is a working clone of a repository on a Server, driven by the git CLI,
// for tests that act as people pushing commits. Its commits are authored by
// "Test <test@example.com>".
type Work struct {
	// Dir is the clone's working tree.
	Dir string

	env env
}

// Clone clones repo into a new temporary directory. When the server has
// basic auth, the credentials travel in an http.extraHeader given through the
// environment, so they appear neither in the remote URL, nor in .git/config,
// nor in any command line or error.
func (s *Server) Clone(t testing.TB, repo string) *Work {
	t.Helper()
	e := s.client
	if s.authEnabled() {
		token := base64.StdEncoding.EncodeToString([]byte(s.opts.Username + ":" + s.opts.Password))
		e = e.with(
			"GIT_CONFIG_COUNT=1",
			"GIT_CONFIG_KEY_0=http."+s.URL+"/.extraHeader", // sent to this server only
			"GIT_CONFIG_VALUE_0=Authorization: Basic "+token,
		)
	}
	w := &Work{Dir: t.TempDir(), env: e}
	w.Git(t, "clone", "--quiet", s.RepoURL(repo), w.Dir)
	w.Git(t, "config", "user.name", "Test")
	w.Git(t, "config", "user.email", "test@example.com")
	return w
}

// Git runs git in the clone, fails the test if it fails, and returns its
// trimmed stdout.
func (w *Work) Git(t testing.TB, args ...string) string {
	t.Helper()
	return w.env.mustRun(t, w.Dir, args...)
}

// Write creates or overwrites the file at the slash-separated path, creating
// its directories.
func (w *Work) Write(t testing.TB, path, content string) {
	t.Helper()
	p := w.path(t, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Remove removes the file or directory at the slash-separated path; it must exist.
func (w *Work) Remove(t testing.TB, path string) {
	t.Helper()
	p := w.path(t, path)
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("gitserver: remove %s: it does not exist", path)
	}
	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
}

func (w *Work) path(t testing.TB, path string) string {
	t.Helper()
	if !filepath.IsLocal(filepath.FromSlash(path)) {
		t.Fatalf("gitserver: path %q is not inside the clone", path)
	}
	return filepath.Join(w.Dir, filepath.FromSlash(path))
}

// Commit stages every change (git add -A), commits it with message msg and
// returns the commit's full hash. A commit with no changes is allowed.
func (w *Work) Commit(t testing.TB, msg string) string {
	t.Helper()
	w.Git(t, "add", "-A")
	w.Git(t, "commit", "--quiet", "--allow-empty", "--no-verify", "-m", msg)
	return w.Git(t, "rev-parse", "HEAD")
}

// Push runs git push to origin. Arguments starting with "-" are flags (e.g.
// "--force", "--delete", "--atomic"); the others are refspecs. With no
// refspec it pushes the current branch to the branch of the same name.
// A refused push is returned as an error holding git's stderr, remote hook
// messages included, so tests can assert on rejections.
func (w *Work) Push(t testing.TB, refspec ...string) error {
	t.Helper()
	args := append([]string{"push", "--quiet", "origin"}, refspec...)
	if !slices.ContainsFunc(refspec, func(a string) bool { return !strings.HasPrefix(a, "-") }) {
		args = append(args, "HEAD")
	}
	_, err := w.env.run(t.Context(), w.Dir, args...)
	return err
}

// Pull fetches origin and rebases the current branch onto its counterpart on
// origin (a fast-forward when there are no local commits). It does nothing
// more than fetch when origin has no such branch.
func (w *Work) Pull(t testing.TB) {
	t.Helper()
	branch := w.Git(t, "symbolic-ref", "--short", "HEAD")
	w.Git(t, "fetch", "--quiet", "--prune", "origin")
	upstream := "refs/remotes/origin/" + branch
	if _, err := w.env.run(t.Context(), w.Dir, "rev-parse", "--verify", "--quiet", upstream); err != nil {
		return
	}
	w.Git(t, "rebase", "--quiet", upstream)
}

// Seed clones repo, writes files (path to content), commits them with msg,
// pushes the commit to main and returns its hash.
func Seed(t testing.TB, s *Server, repo string, files map[string]string, msg string) string {
	t.Helper()
	w := s.Clone(t, repo)
	for _, path := range slices.Sorted(maps.Keys(files)) {
		w.Write(t, path, files[path])
	}
	sha := w.Commit(t, msg)
	if err := w.Push(t, "HEAD:refs/heads/main"); err != nil {
		t.Fatal(err)
	}
	return sha
}
