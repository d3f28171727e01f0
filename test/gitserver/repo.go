package gitserver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// CreateRepo creates the bare repository Root/name.git, with main as its
// default branch and pushes over HTTP allowed, and returns its clone URL.
func (s *Server) CreateRepo(t testing.TB, name string) string {
	t.Helper()
	dir := s.RepoDir(name)
	if _, err := os.Stat(dir); err == nil {
		t.Fatalf("gitserver: repository %s already exists", name)
	}
	s.env.mustRun(t, s.Root, "init", "--quiet", "--bare", "--initial-branch=main", dir)
	// Without REMOTE_USER (no auth) http-backend refuses pushes unless this is set.
	s.env.mustRun(t, dir, "config", "http.receivepack", "true")
	return s.RepoURL(name)
}

// RepoDir returns the directory of the bare repository name. A trailing
// ".git" in name is optional.
func (s *Server) RepoDir(name string) string {
	return filepath.Join(s.Root, filepath.FromSlash(repoName(name))+".git")
}

// RepoURL returns the clone URL of the repository name.
func (s *Server) RepoURL(name string) string {
	return s.URL + "/" + repoName(name) + ".git"
}

func repoName(name string) string { return strings.TrimSuffix(name, ".git") }

// InstallHook writes script as the executable server hook (e.g. "pre-receive")
// of the repository repo, replacing any earlier one.
func (s *Server) InstallHook(t testing.TB, repo, hook, script string) {
	t.Helper()
	if hook == "" || strings.ContainsAny(hook, `/\`) {
		t.Fatalf("gitserver: bad hook name %q", hook)
	}
	dir := filepath.Join(s.RepoDir(repo), "hooks")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Write aside and rename, so a push never runs a half-written hook.
	tmp, err := os.CreateTemp(dir, "."+hook+"-*")
	if err != nil {
		t.Fatal(err)
	}
	_, werr := tmp.WriteString(script)
	cerr := tmp.Close()
	if werr != nil || cerr != nil {
		os.Remove(tmp.Name())
		t.Fatalf("gitserver: write hook %s: %v %v", hook, werr, cerr)
	}
	if err := os.Chmod(tmp.Name(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, hook)); err != nil {
		t.Fatal(err)
	}
}
