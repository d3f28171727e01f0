package gitserver_test

import (
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/sluice-gitops/sluice/test/gitserver"
)

func TestNewHandlerServesWithoutATest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts gitserver.Options
		auth *githttp.BasicAuth
	}{
		{name: "without auth"},
		{name: "with basic auth", opts: gitserver.Options{Username: "demo", Password: password}, auth: &githttp.BasicAuth{Username: "demo", Password: password}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			root, home := filepath.Join(base, "repos"), filepath.Join(base, "home")
			h, err := gitserver.NewHandler(root, gitserver.HandlerOptions{Options: tt.opts, Home: home})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := gitserver.CreateBareRepo(t.Context(), root, home, "demo"); err != nil {
				t.Fatal(err)
			}
			if _, err := gitserver.CreateBareRepo(t.Context(), root, home, "demo"); err == nil {
				t.Error("creating the repository a second time succeeded")
			}
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			url := srv.URL + "/demo.git"

			repo, err := git.PlainInit(filepath.Join(base, "work"), false)
			if err != nil {
				t.Fatal(err)
			}
			wt, err := repo.Worktree()
			if err != nil {
				t.Fatal(err)
			}
			sig := &object.Signature{Name: "Test", Email: "test@example.com"}
			sha, err := wt.Commit("first", &git.CommitOptions{AllowEmptyCommits: true, Author: sig})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{url}}); err != nil {
				t.Fatal(err)
			}
			var auth transport.AuthMethod
			if tt.auth != nil {
				auth = tt.auth
			}
			err = repo.Push(&git.PushOptions{RemoteName: "origin", Auth: auth,
				RefSpecs: []config.RefSpec{"refs/heads/master:refs/heads/main"}})
			if err != nil {
				t.Fatal(err)
			}
			clone, err := git.Clone(memory.NewStorage(), nil, &git.CloneOptions{URL: url, Auth: auth})
			if err != nil {
				t.Fatal(err)
			}
			head, err := clone.Reference(plumbing.NewBranchReferenceName("main"), true)
			if err != nil {
				t.Fatal(err)
			}
			if head.Hash() != sha {
				t.Errorf("main is %s after the push, want %s", head.Hash(), sha)
			}
		})
	}
}
