package gitserver_test

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/google/go-cmp/cmp"

	"github.com/sluice-gitops/sluice/test/gitserver"
)

const password = "s3cret-Pa55"

func TestGoGitClonesFetchesAndPushes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts gitserver.Options
		auth transport.AuthMethod
	}{
		{name: "without auth"},
		{
			name: "with basic auth",
			opts: gitserver.Options{Username: "sluice", Password: password},
			auth: &githttp.BasicAuth{Username: "sluice", Password: password},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := gitserver.Start(t, tt.opts)
			url := s.CreateRepo(t, "desired")
			seed := gitserver.Seed(t, s, "desired", map[string]string{"README.md": "hello\n"}, "initial")

			dir := t.TempDir()
			repo, err := git.PlainCloneContext(t.Context(), dir, false, &git.CloneOptions{URL: url, Auth: tt.auth})
			if err != nil {
				t.Fatalf("go-git clone: %v", err)
			}
			head, err := repo.Head()
			if err != nil {
				t.Fatal(err)
			}
			if got := head.Hash().String(); got != seed {
				t.Errorf("cloned HEAD = %s, want the seed commit %s", got, seed)
			}

			// A teammate pushes with the git CLI; go-git fetches it.
			team := s.Clone(t, "desired")
			team.Write(t, "environments/staging/kustomization.yaml", "resources: []\n")
			bump := team.Commit(t, "bump A to v3")
			if err := team.Push(t); err != nil {
				t.Fatal(err)
			}
			if err := repo.FetchContext(t.Context(), &git.FetchOptions{Auth: tt.auth}); err != nil {
				t.Fatalf("go-git fetch: %v", err)
			}
			if got := ref(t, repo, plumbing.NewRemoteReferenceName("origin", "main")); got != bump {
				t.Errorf("origin/main after fetch = %s, want %s", got, bump)
			}

			// go-git pushes; the teammate pulls it.
			wt, err := repo.Worktree()
			if err != nil {
				t.Fatal(err)
			}
			if err := wt.Reset(&git.ResetOptions{Commit: plumbing.NewHash(bump), Mode: git.HardReset}); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "NOTES.md"), []byte("from go-git\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := wt.Add("NOTES.md"); err != nil {
				t.Fatal(err)
			}
			mine, err := wt.Commit("add notes", &git.CommitOptions{Author: &object.Signature{Name: "Sluice", Email: "sluice@example.com"}})
			if err != nil {
				t.Fatal(err)
			}
			if err := repo.PushContext(t.Context(), &git.PushOptions{Auth: tt.auth}); err != nil {
				t.Fatalf("go-git push: %v", err)
			}
			team.Pull(t)
			if got := team.Git(t, "rev-parse", "HEAD"); got != mine.String() {
				t.Errorf("teammate's HEAD after pull = %s, want go-git's commit %s", got, mine)
			}
			if s.Requests() == 0 {
				t.Error("Requests() = 0 after a clone, a fetch and pushes")
			}
		})
	}
}

func TestWrongCredentialsAreRefused(t *testing.T) {
	t.Parallel()
	s := gitserver.Start(t, gitserver.Options{Username: "sluice", Password: password})
	url := s.CreateRepo(t, "desired")
	gitserver.Seed(t, s, "desired", map[string]string{"README.md": "hello\n"}, "initial")

	tests := []struct {
		name string
		auth transport.AuthMethod
	}{
		{name: "wrong password", auth: &githttp.BasicAuth{Username: "sluice", Password: "wrong-" + password}},
		{name: "wrong user", auth: &githttp.BasicAuth{Username: "mallory", Password: password}},
		{name: "no credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := git.PlainCloneContext(t.Context(), t.TempDir(), false, &git.CloneOptions{URL: url, Auth: tt.auth})
			if !errors.Is(err, transport.ErrAuthenticationRequired) {
				t.Fatalf("go-git clone error = %v, want %v", err, transport.ErrAuthenticationRequired)
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("error %q holds the password", err)
			}
		})
	}

	t.Run("a CLI clone keeps the password out of its config", func(t *testing.T) {
		w := s.Clone(t, "desired")
		b, err := os.ReadFile(filepath.Join(w.Dir, ".git", "config"))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(password)) || strings.Contains(w.Git(t, "remote", "get-url", "origin"), password) {
			t.Errorf(".git/config holds the password:\n%s", b)
		}
	})
}

func TestProtectBranches(t *testing.T) {
	t.Parallel()
	s := gitserver.Start(t, gitserver.Options{})
	url := s.CreateRepo(t, "desired")
	base := gitserver.Seed(t, s, "desired", map[string]string{"README.md": "hello\n", "docs/old.md": "old\n"}, "initial")
	s.InstallHook(t, "desired", "pre-receive", gitserver.ProtectBranches("staging"))

	w := s.Clone(t, "desired")
	if err := w.Push(t, "HEAD:refs/heads/staging"); err != nil {
		t.Fatalf("creating the protected branch: %v", err)
	}

	// A fast-forward of the protected branch is allowed.
	w.Write(t, "environments/staging/kustomization.yaml", "resources: []\n")
	tested := w.Commit(t, "bump A to v3")
	if err := w.Push(t, "HEAD:staging"); err != nil {
		t.Fatalf("fast-forward push to staging: %v", err)
	}
	assertRemoteRef(t, w, "refs/heads/staging", tested)

	// A rewrite, kept on an unprotected branch so go-git can push it too.
	w.Git(t, "reset", "--quiet", "--hard", base)
	w.Remove(t, "docs/old.md")
	rewrite := w.Commit(t, "rewrite history")
	if err := w.Push(t, "HEAD:refs/heads/rewrite"); err != nil {
		t.Fatalf("pushing an unprotected branch: %v", err)
	}

	err := w.Push(t, "--force", "HEAD:staging")
	assertRejected(t, "git push --force", err, "protected branch staging: non-fast-forward update rejected")
	err = w.Push(t, "--delete", "staging")
	assertRejected(t, "git push --delete", err, "protected branch staging: deletion rejected")

	repo, err := git.PlainCloneContext(t.Context(), t.TempDir(), false, &git.CloneOptions{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	err = repo.PushContext(t.Context(), &git.PushOptions{
		RefSpecs: []config.RefSpec{"+refs/remotes/origin/rewrite:refs/heads/staging"},
		Force:    true,
		Progress: &progress,
	})
	assertRejected(t, "go-git force push", withProgress(err, &progress), "protected branch staging: non-fast-forward update rejected")
	progress.Reset()
	err = repo.PushContext(t.Context(), &git.PushOptions{
		RefSpecs: []config.RefSpec{":refs/heads/staging"},
		Progress: &progress,
	})
	assertRejected(t, "go-git delete", withProgress(err, &progress), "protected branch staging: deletion rejected")

	assertRemoteRef(t, w, "refs/heads/staging", tested)
	wantLog := []string{
		"non-fast-forward refs/heads/staging " + tested + " " + rewrite,
		"deletion refs/heads/staging " + tested,
		"non-fast-forward refs/heads/staging " + tested + " " + rewrite,
		"deletion refs/heads/staging " + tested,
	}
	if diff := cmp.Diff(wantLog, s.ProtectLog(t, "desired")); diff != "" {
		t.Errorf("protect.log (-want +got):\n%s", diff)
	}

	// Unprotected branches may be force-pushed, by the CLI and by go-git.
	if err := w.Push(t, "HEAD:refs/heads/feature"); err != nil {
		t.Fatal(err)
	}
	w.Git(t, "reset", "--quiet", "--hard", tested)
	if err := w.Push(t, "--force", "HEAD:feature"); err != nil {
		t.Errorf("git push --force to an unprotected branch: %v", err)
	}
	assertRemoteRef(t, w, "refs/heads/feature", tested)
	if err := repo.PushContext(t.Context(), &git.PushOptions{
		RefSpecs: []config.RefSpec{"+refs/remotes/origin/rewrite:refs/heads/feature"},
		Force:    true,
	}); err != nil {
		t.Errorf("go-git force push to an unprotected branch: %v", err)
	}
	assertRemoteRef(t, w, "refs/heads/feature", rewrite)
	if diff := cmp.Diff(wantLog, s.ProtectLog(t, "desired")); diff != "" {
		t.Errorf("protect.log after unprotected pushes (-want +got):\n%s", diff)
	}
}

func TestProtectBranchesTakesNamesLiterally(t *testing.T) {
	t.Parallel()
	s := gitserver.Start(t, gitserver.Options{})
	s.CreateRepo(t, "desired")
	s.InstallHook(t, "desired", "pre-receive", gitserver.ProtectBranches("staging", "refs/heads/production", "rel*", "it's"))
	base := gitserver.Seed(t, s, "desired", map[string]string{"README.md": "hello\n"}, "initial")
	w := s.Clone(t, "desired")
	w.Commit(t, "second")
	if err := w.Push(t, "HEAD:staging", "HEAD:production", "HEAD:release"); err != nil {
		t.Fatalf("creating branches: %v", err)
	}
	w.Git(t, "reset", "--quiet", "--hard", base)
	if err := w.Push(t, "--force", "HEAD:release"); err != nil {
		t.Errorf("rel* protected the branch release: %v", err)
	}
	if got := s.ProtectLog(t, "desired"); got != nil {
		t.Errorf("ProtectLog before any refusal = %q, want nil", got)
	}
	err := w.Push(t, "--force", "HEAD:production")
	assertRejected(t, "git push --force to production", err, "protected branch production")
	if got, want := len(s.ProtectLog(t, "desired")), 1; got != want {
		t.Errorf("protect.log has %d lines, want %d", got, want)
	}
}

func TestSetAvailableSimulatesAnOutage(t *testing.T) {
	t.Parallel()
	s := gitserver.Start(t, gitserver.Options{})
	url := s.CreateRepo(t, "desired")
	gitserver.Seed(t, s, "desired", map[string]string{"README.md": "hello\n"}, "initial")
	repo, err := git.PlainCloneContext(t.Context(), t.TempDir(), false, &git.CloneOptions{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	w := s.Clone(t, "desired")

	s.SetAvailable(false)
	before := s.Requests()
	err = repo.FetchContext(t.Context(), &git.FetchOptions{})
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("go-git fetch during the outage: error = %v, want a 503", err)
	}
	if s.Requests() == before {
		t.Error("Requests() did not count the refused fetch")
	}
	w.Commit(t, "during the outage")
	if err := w.Push(t); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("git push during the outage: error = %v, want a 503", err)
	}

	s.SetAvailable(true)
	if err := w.Push(t); err != nil {
		t.Errorf("git push after the outage: %v", err)
	}
	if err := repo.FetchContext(t.Context(), &git.FetchOptions{}); err != nil {
		t.Errorf("go-git fetch after the outage: %v", err)
	}
}

// Pushes above git's http.postBuffer (1 MiB) are sent chunked, which
// net/http/cgi refuses unless the server works around it.
func TestLargePushes(t *testing.T) {
	t.Parallel()
	s := gitserver.Start(t, gitserver.Options{Username: "sluice", Password: password})
	url := s.CreateRepo(t, "desired")
	auth := &githttp.BasicAuth{Username: "sluice", Password: password}

	big := randomText(t, 2<<20)
	w := s.Clone(t, "desired")
	w.Write(t, "blob/cli.bin", big)
	w.Commit(t, "large commit from the CLI")
	if err := w.Push(t); err != nil {
		t.Fatalf("large git push: %v", err)
	}

	dir := t.TempDir()
	repo, err := git.PlainCloneContext(t.Context(), dir, false, &git.CloneOptions{URL: url, Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "blob", "cli.bin")); err != nil || string(got) != big {
		t.Fatalf("go-git clone of the large commit: file differs (read error %v)", err)
	}

	big2 := randomText(t, 1<<20)
	if err := os.WriteFile(filepath.Join(dir, "blob", "go-git.bin"), []byte(big2), 0o644); err != nil {
		t.Fatal(err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Add("blob/go-git.bin"); err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Commit("large commit from go-git", &git.CommitOptions{Author: &object.Signature{Name: "Sluice", Email: "sluice@example.com"}}); err != nil {
		t.Fatal(err)
	}
	if err := repo.PushContext(t.Context(), &git.PushOptions{Auth: auth}); err != nil {
		t.Fatalf("large go-git push: %v", err)
	}
	w.Pull(t)
	if got, err := os.ReadFile(filepath.Join(w.Dir, "blob", "go-git.bin")); err != nil || string(got) != big2 {
		t.Fatalf("CLI pull of go-git's large commit: file differs (read error %v)", err)
	}
}

// git clients gzip upload-pack requests; http-backend must inflate them,
// whether they come with a length or chunked.
func TestGzippedRequestBodies(t *testing.T) {
	t.Parallel()
	s := gitserver.Start(t, gitserver.Options{})
	url := s.CreateRepo(t, "desired")
	sha := gitserver.Seed(t, s, "desired", map[string]string{"README.md": "hello\n"}, "initial")

	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	io.WriteString(zw, pktLine("want "+sha+" no-progress\n")+"0000"+pktLine("done\n"))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		body func() io.Reader
	}{
		{name: "with a content length", body: func() io.Reader { return bytes.NewReader(zipped.Bytes()) }},
		{name: "chunked", body: func() io.Reader { return io.MultiReader(bytes.NewReader(zipped.Bytes())) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/git-upload-pack", tt.body())
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-git-upload-pack-request")
			req.Header.Set("Content-Encoding", "gzip")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(body, []byte("0008NAK\nPACK")) {
				t.Errorf("upload-pack answered %s %.40q, want 200 with NAK and a pack", resp.Status, body)
			}
		})
	}
}

// The host's git configuration and GIT_* environment must not reach the
// harness's git processes.
func TestGitIsHermetic(t *testing.T) {
	home := t.TempDir()
	leaky := "[user]\n\temail = leak@example.com\n[url \"http://leak.invalid/\"]\n\tinsteadOf = http://127.0.0.1\n"
	if err := os.WriteFile(filepath.Join(home, ".gitconfig"), []byte(leaky), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", home)
	t.Setenv("GIT_AUTHOR_EMAIL", "leak@example.com")
	t.Setenv("GIT_CONFIG_PARAMETERS", "'user.name'='Leak'")

	s := gitserver.Start(t, gitserver.Options{})
	s.CreateRepo(t, "desired")
	gitserver.Seed(t, s, "desired", map[string]string{"README.md": "hello\n"}, "initial")
	w := s.Clone(t, "desired")
	if got, want := w.Git(t, "log", "-1", "--format=%an <%ae>, %cn <%ce>"), "Test <test@example.com>, Test <test@example.com>"; got != want {
		t.Errorf("commit identity = %q, want %q", got, want)
	}
}

func ref(t *testing.T, repo *git.Repository, name plumbing.ReferenceName) string {
	t.Helper()
	r, err := repo.Reference(name, true)
	if err != nil {
		t.Fatalf("reference %s: %v", name, err)
	}
	return r.Hash().String()
}

func assertRemoteRef(t *testing.T, w *gitserver.Work, name, want string) {
	t.Helper()
	got, _, _ := strings.Cut(w.Git(t, "ls-remote", "origin", name), "\t")
	if got != want {
		t.Errorf("%s on the server = %q, want %s", name, got, want)
	}
}

func assertRejected(t *testing.T, what string, err error, msg string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s was accepted, want a rejection", what)
		return
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("%s error = %v, want it to say %q", what, err, msg)
	}
}

// withProgress adds what the server sent on go-git's progress channel, where
// hook messages arrive, to a push error.
func withProgress(err error, progress *bytes.Buffer) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w\n%s", err, progress)
}

func randomText(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func pktLine(s string) string { return fmt.Sprintf("%04x%s", len(s)+4, s) }
