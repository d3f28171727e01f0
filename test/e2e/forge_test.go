package e2e

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	sdk "code.gitea.io/sdk/gitea"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/test/cluster"
	"github.com/sluice-gitops/sluice/test/gitea"
)

// forgeScenario is the article's repository on a real Gitea, owned by a
// developer, with a `sluice` user that alone may push to staging.
type forgeScenario struct {
	t       *testing.T
	srv     *gitea.Server
	dev     *gitea.User
	sluice  *gitea.User
	owner   string
	repo    string
	gate    string
	work    string // the developer's clone
	dir     string
	cluster *cluster.Cluster
}

func newForgeScenario(t *testing.T, srv *gitea.Server, name string) *forgeScenario {
	t.Helper()
	s := &forgeScenario{
		t: t, srv: srv, owner: "dev-" + name, repo: "desired", gate: "stg-" + randHex(3),
		dir: t.TempDir(), cluster: cluster.Require(t),
	}
	s.dev = srv.CreateUser(t, s.owner, "write:repository", "write:user")
	s.sluice = srv.CreateUser(t, "sluice-"+name, "write:repository")
	if _, _, err := s.dev.Client.CreateRepo(sdk.CreateRepoOption{Name: s.repo, Private: true, DefaultBranch: "main"}); err != nil {
		t.Fatalf("create repository: %v", err)
	}
	write := sdk.AccessModeWrite
	if _, err := s.dev.Client.AddCollaborator(s.owner, s.repo, s.sluice.Name, sdk.AddCollaboratorOption{Permission: &write}); err != nil {
		t.Fatalf("add %s as collaborator: %v", s.sluice.Name, err)
	}

	s.work = filepath.Join(s.dir, "work")
	s.git("", "init", "-q", "-b", "main", s.work)
	s.git(s.work, "config", "user.email", "dev@example.com")
	s.git(s.work, "config", "user.name", "Developer")
	src := filepath.Join(repoRoot(t), "examples", "article")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(s.work, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.git(s.work, "add", "-A")
	s.git(s.work, "commit", "-qm", "Initial desired state")
	s.push(s.dev, "HEAD:refs/heads/main", "HEAD:refs/heads/staging")

	// Only Sluice may push to staging: the developer is refused.
	if _, _, err := s.dev.Client.CreateBranchProtection(s.owner, s.repo, sdk.CreateBranchProtectionOption{
		RuleName: "staging", EnablePush: true, EnablePushWhitelist: true, PushWhitelistUsernames: []string{s.sluice.Name},
	}); err != nil {
		t.Fatalf("protect staging: %v", err)
	}
	s.git(s.work, "commit", "-q", "--allow-empty", "-m", "try to move staging by hand")
	if out, err := s.tryGit(s.work, "-c", s.dev.GitAuth(), "push", s.srv.CloneURL(s.owner, s.repo), "HEAD:refs/heads/staging"); err == nil {
		t.Fatalf("the developer pushed to protected staging:\n%s", out)
	}
	s.git(s.work, "reset", "-q", "--hard", "HEAD~1")
	return s
}

func (s *forgeScenario) git(dir string, args ...string) string {
	s.t.Helper()
	out, err := s.tryGit(dir, args...)
	if err != nil {
		s.t.Fatalf("git %s: %v", args[0], err)
	}
	return out
}

func (s *forgeScenario) tryGit(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+s.dir, "GIT_TERMINAL_PROMPT=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

func (s *forgeScenario) push(u *gitea.User, refspecs ...string) {
	s.t.Helper()
	s.git(s.work, append([]string{"-c", u.GitAuth(), "push", "-q", s.srv.CloneURL(s.owner, s.repo)}, refspecs...)...)
}

// commit writes files in the developer's clone, commits and pushes to main.
func (s *forgeScenario) commit(msg string, files ...string) string {
	s.t.Helper()
	for i := 0; i+1 < len(files); i += 2 {
		p := filepath.Join(s.work, files[i])
		if err := os.WriteFile(p, []byte(files[i+1]), 0o644); err != nil {
			s.t.Fatal(err)
		}
	}
	s.git(s.work, "add", "-A")
	s.git(s.work, "commit", "-qm", msg)
	s.push(s.dev, "HEAD:refs/heads/main")
	return s.git(s.work, "rev-parse", "HEAD")
}

// config writes sluice.yaml: Git as the sluice user, the forge with
// forgeToken.
func (s *forgeScenario) config(forgeToken string) string {
	s.t.Helper()
	gitToken := filepath.Join(s.dir, "git-token")
	ft := filepath.Join(s.dir, "forge-token")
	if err := os.WriteFile(gitToken, []byte(s.sluice.Token+"\n"), 0o600); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(ft, []byte(forgeToken+"\n"), 0o600); err != nil {
		s.t.Fatal(err)
	}
	cfg := "repository:\n  url: " + s.srv.CloneURL(s.owner, s.repo) + "\n" +
		"  credentials: {username: " + s.sluice.Name + ", passwordFile: git-token}\n" +
		"  cacheDir: cache\n" +
		"  author: {name: Sluice, email: sluice@example.com}\n" +
		"gates:\n" +
		"  - name: " + s.gate + "\n" +
		"    path: environments/staging\n" +
		"    targetBranch: staging\n" +
		"    timeouts: {apply: 30s, health: 60s, tests: 60s}\n" +
		"    onFailure: {keepNamespace: 0s}\n" +
		"    retry: {initialBackoff: 1s, maxBackoff: 4s, onceAttempts: 5}\n" +
		"forge:\n  type: gitea\n  url: " + s.srv.URL + "\n  tokenFile: forge-token\n"
	p := filepath.Join(s.dir, "sluice.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return p
}

func (s *forgeScenario) runOnce(config string, args ...string) result {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	args = append([]string{"run", "--once", "--config", config, "--kubeconfig", s.cluster.Kubeconfig, "--progress", "always"}, args...)
	cmd := exec.CommandContext(ctx, sluiceBin, args...)
	cmd.Dir = s.dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatalf("run sluice: %v", err)
	}
	s.t.Logf("sluice run --once (exit %d)\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
	return r
}

// fetch brings main, staging and the notes from Gitea into the clone.
func (s *forgeScenario) fetch() {
	s.t.Helper()
	s.git(s.work, "-c", s.dev.GitAuth(), "fetch", "-q", s.srv.CloneURL(s.owner, s.repo),
		"+refs/heads/*:refs/remotes/gitea/*", "+refs/notes/*:refs/notes/*")
}

func (s *forgeScenario) note(sha string) gitrepo.Record {
	s.t.Helper()
	out, err := s.tryGit(s.work, "notes", "--ref=sluice", "show", sha)
	if err != nil {
		s.t.Fatalf("no note on %s: %s", sha[:7], out)
	}
	n, err := gitrepo.DecodeNote([]byte(out))
	if err != nil {
		s.t.Fatalf("note of %s: %v", sha[:7], err)
	}
	rec, ok := n.Get(s.gate)
	if !ok {
		s.t.Fatalf("note of %s has no record of gate %s", sha[:7], s.gate)
	}
	return rec
}

// statuses lists the statuses of sha in the gate's context, oldest first,
// as Gitea's API gives them.
func (s *forgeScenario) statuses(sha string) []*sdk.Status {
	s.t.Helper()
	list, _, err := s.dev.Client.ListStatuses(s.owner, s.repo, sha, sdk.ListStatusesOption{ListOptions: sdk.ListOptions{PageSize: 50}})
	if err != nil {
		s.t.Fatalf("list statuses of %s: %v", sha[:7], err)
	}
	var out []*sdk.Status
	for _, st := range list {
		if st.Context == "sluice/"+s.gate {
			out = append(out, st)
		}
	}
	// Gitea lists the newest first, by a time in seconds: the id says
	// which came first.
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// TestForgeStatusesOnGitea drains a small queue on a repository hosted by
// a real Gitea: every queued commit gets sluice/<gate> statuses, pending
// first and the verdict last, visible through Gitea's API; staging is
// moved by the sluice user through branch protection.
func TestForgeStatusesOnGitea(t *testing.T) {
	srv := gitea.Start(t)
	s := newForgeScenario(t, srv, "ok")
	a3 := s.commit("bump A to v3", pair(version("a", "v3"))...)
	b4 := s.commit("bump B to v4", pair(version("b", "v4"))...)

	r := s.runOnce(s.config(s.sluice.Token), "--public-url", "https://sluice.example.com")
	if r.code != 0 {
		t.Fatalf("sluice run --once exited %d", r.code)
	}
	s.fetch()
	revert := s.git(s.work, "rev-parse", "refs/remotes/gitea/main")
	if revert == b4 {
		t.Fatalf("main is still at b4: no revert pushed")
	}
	if got := s.git(s.work, "rev-parse", "refs/remotes/gitea/staging"); got != revert {
		t.Errorf("staging = %s, want the revert %s (pushed by %s through branch protection)", got[:7], revert[:7], s.sluice.Name)
	}
	if v := s.note(a3).Verdict; v != "passed" {
		t.Errorf("a3's verdict %s, want passed", v)
	}
	if v := s.note(b4).Verdict; v != "failed" {
		t.Errorf("b4's verdict %s, want failed", v)
	}

	// A commit tested on the cluster is pending for seconds: Gitea holds
	// that status before the verdict. The revert passes at once on the
	// digest of a tested candidate, and only the latest status is sent.
	tests := []struct {
		name, sha   string
		wantPending bool
		state       sdk.StatusState
		desc        string
	}{
		{"the passing commit", a3, true, sdk.StatusSuccess, "passed"},
		{"the failing commit", b4, true, sdk.StatusFailure, "reverted: tests: test Job/a-checks-b failed"},
		{"the revert commit", revert, false, sdk.StatusSuccess, "passed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sts := s.statuses(tt.sha)
			var seq []string
			for _, st := range sts {
				seq = append(seq, string(st.State)+" "+st.Description)
			}
			t.Logf("%s: %q", tt.sha[:7], seq)
			if len(sts) == 0 {
				t.Fatal("no status in the gate's context")
			}
			tested := false
			for _, st := range sts[:len(sts)-1] {
				if st.State != sdk.StatusPending {
					t.Errorf("statuses %q: a %s before the verdict", seq, st.State)
				}
				tested = tested || strings.HasPrefix(st.Description, "testing in sluice-"+s.gate)
			}
			if tt.wantPending && !tested {
				t.Errorf("statuses %q, want \"testing in sluice-%s-…\" before the verdict", seq, s.gate)
			}
			last := sts[len(sts)-1]
			if last.State != tt.state || !strings.HasPrefix(last.Description, tt.desc) {
				t.Errorf("last status %q, want %s %q…", seq[len(seq)-1], tt.state, tt.desc)
			}
			if last.TargetURL != "https://sluice.example.com/readyz" {
				t.Errorf("target URL %q, want the public URL's /readyz", last.TargetURL)
			}
			if last.Creator == nil || last.Creator.UserName != s.sluice.Name {
				t.Errorf("status set by %v, want %s", last.Creator, s.sluice.Name)
			}
		})
	}
}

// TestForgeRefusedToken gives Sluice a forge token of a user without
// rights on the repository: the refusal is logged clearly, naming the
// forge and the status context, and every verdict is still written.
func TestForgeRefusedToken(t *testing.T) {
	srv := gitea.Start(t)
	s := newForgeScenario(t, srv, "refused")
	outsider := srv.CreateUser(t, "outsider", "write:repository")
	a3 := s.commit("bump A to v3", pair(version("a", "v3"))...)
	b4 := s.commit("bump B to v4", pair(version("b", "v4"))...)

	r := s.runOnce(s.config(outsider.Token))
	if r.code != 0 {
		t.Fatalf("sluice run --once exited %d: a refused status must not fail the gate", r.code)
	}
	if strings.Contains(r.stderr+r.stdout, outsider.Token) || strings.Contains(r.stderr+r.stdout, s.sluice.Token) {
		t.Fatal("a token was printed")
	}
	var refusals []string
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.Contains(l, "forge refused a commit status") {
			refusals = append(refusals, l)
		}
	}
	if len(refusals) != 1 {
		t.Fatalf("%d lines about the refused token, want exactly one:\n%s", len(refusals), strings.Join(refusals, "\n"))
	}
	for _, want := range []string{"level=ERROR", "gitea " + srv.URL, s.owner + "/" + s.repo, "context=sluice/" + s.gate, "http=404"} {
		if !strings.Contains(refusals[0], want) {
			t.Errorf("the refusal does not say %q:\n%s", want, refusals[0])
		}
	}

	s.fetch()
	if v := s.note(a3).Verdict; v != "passed" {
		t.Errorf("a3's verdict %s, want passed", v)
	}
	if v := s.note(b4).Verdict; v != "failed" {
		t.Errorf("b4's verdict %s, want failed", v)
	}
	revert := s.git(s.work, "rev-parse", "refs/remotes/gitea/main")
	if v := s.note(revert).Verdict; v != "passed" {
		t.Errorf("the revert's verdict %s, want passed", v)
	}
	if got := s.git(s.work, "rev-parse", "refs/remotes/gitea/staging"); got != revert {
		t.Errorf("staging = %s, want the revert %s", got[:7], revert[:7])
	}
	for _, sha := range []string{a3, b4, revert} {
		if st := s.statuses(sha); len(st) != 0 {
			t.Errorf("%s has %d statuses though the token was refused", sha[:7], len(st))
		}
	}
}
