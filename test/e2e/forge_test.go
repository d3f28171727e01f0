package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	sdk "code.gitea.io/sdk/gitea"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/manifests"
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
	return s.statusesWhere(sha, func(c string) bool { return c == "sluice/"+s.gate })
}

// statusesWhere lists the statuses of sha whose context keep takes, oldest
// first.
func (s *forgeScenario) statusesWhere(sha string, keep func(context string) bool) []*sdk.Status {
	s.t.Helper()
	list, _, err := s.dev.Client.ListStatuses(s.owner, s.repo, sha, sdk.ListStatusesOption{ListOptions: sdk.ListOptions{PageSize: 50}})
	if err != nil {
		s.t.Fatalf("list statuses of %s: %v", sha[:7], err)
	}
	var out []*sdk.Status
	for _, st := range list {
		if keep(st.Context) {
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
			if want := "https://sluice.example.com/status/" + s.gate + "/" + tt.sha; last.TargetURL != want {
				t.Errorf("target URL %q, want the commit's status page %q", last.TargetURL, want)
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

// branch commits files on a new branch from base in the developer's clone
// and pushes it; the clone goes back to main. It returns the branch's tip.
func (s *forgeScenario) branch(name, base, msg string, files ...string) string {
	s.t.Helper()
	s.git(s.work, "checkout", "-q", "-b", name, base)
	defer s.git(s.work, "checkout", "-q", "main")
	for i := 0; i+1 < len(files); i += 2 {
		if err := os.WriteFile(filepath.Join(s.work, files[i]), []byte(files[i+1]), 0o644); err != nil {
			s.t.Fatal(err)
		}
	}
	s.git(s.work, "add", "-A")
	s.git(s.work, "commit", "-qm", msg)
	s.push(s.dev, "HEAD:refs/heads/"+name)
	return s.git(s.work, "rev-parse", "HEAD")
}

// openPull opens a pull request from branch into main through Gitea's API
// and waits until Gitea serves its head at refs/pull/N/head.
func (s *forgeScenario) openPull(branch, title, head string) int64 {
	s.t.Helper()
	pr, _, err := s.dev.Client.CreatePullRequest(s.owner, s.repo, sdk.CreatePullRequestOption{Head: branch, Base: "main", Title: title})
	if err != nil {
		s.t.Fatalf("open a pull request from %s: %v", branch, err)
	}
	s.waitPullHead(pr.Index, head)
	return pr.Index
}

// waitPullHead waits until Gitea's API and its refs/pull/N/head both say
// that pull request n's head is head: Gitea updates them in the background
// after a push.
func (s *forgeScenario) waitPullHead(n int64, head string) {
	s.t.Helper()
	ref := fmt.Sprintf("refs/pull/%d/head", n)
	deadline := time.Now().Add(time.Minute)
	for {
		pr, _, err := s.dev.Client.GetPullRequest(s.owner, s.repo, n)
		out, _ := s.tryGit(s.work, "-c", s.dev.GitAuth(), "ls-remote", s.srv.CloneURL(s.owner, s.repo), ref)
		if err == nil && pr.Head != nil && pr.Head.Sha == head && strings.HasPrefix(out, head) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("pull request %d: Gitea did not serve head %s within a minute (API: %v, %v; %s: %q)", n, head[:7], pr, err, ref, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// allStatuses lists every status of sha whose context starts with
// "sluice/", oldest first.
func (s *forgeScenario) allStatuses(sha string) []*sdk.Status {
	s.t.Helper()
	return s.statusesWhere(sha, func(c string) bool { return strings.HasPrefix(c, "sluice/") })
}

// TestForgePullRequestPreviews opens pull requests into main on a real
// Gitea while a commit waits in the queue: after `run --once`, each pull
// request that touches staging has sluice/<gate>/preview on its head, for
// its changes tested on top of the queue's candidate; the one that only
// edits documentation has none; no branch moved for them, nothing was
// reverted, and their namespaces are gone. A new push to a pull request
// gets a new status on its new head.
func TestForgePullRequestPreviews(t *testing.T) {
	srv := gitea.Start(t)
	s := newForgeScenario(t, srv, "pulls")
	base := s.git(s.work, "rev-parse", "HEAD")
	good := s.branch("bump-a", base, "bump A to v3", pair(version("a", "v3"))...)
	bad := s.branch("bump-b", base, "bump B to v4", pair(version("b", "v4"))...)
	docs := s.branch("docs", base, "explain the repository", "README.md", "# The desired state\n\nSee environments/.\n")
	clash := s.branch("bump-z", base, "bump Z to v2", pair(version("z", "v2"))...)
	prGood := s.openPull("bump-a", "bump A to v3", good)
	s.openPull("bump-b", "bump B to v4", bad)
	s.openPull("docs", "explain the repository", docs)
	s.openPull("bump-z", "bump Z to v2", clash)
	// The queue moves on after the pull requests branched off: they are
	// judged on top of it, not on top of their base.
	z1 := s.commit("bump Z to v1", pair(version("z", "v1"))...)

	cfg := s.config(s.sluice.Token)
	r := s.runOnce(cfg)
	if r.code != 0 {
		t.Fatalf("sluice run --once exited %d", r.code)
	}
	if strings.Contains(r.stderr+r.stdout, s.sluice.Token) {
		t.Fatal("a token was printed")
	}
	s.fetch()
	if v := s.note(z1).Verdict; v != "passed" {
		t.Fatalf("the queued commit's verdict %s, want passed", v)
	}
	on := z1[:12]
	noBranchMoved := func() {
		t.Helper()
		for _, b := range []string{"main", "staging"} {
			if got := s.git(s.work, "rev-parse", "refs/remotes/gitea/"+b); got != z1 {
				t.Errorf("%s = %s, want the queued commit %s: pull requests move no branch and revert nothing", b, got[:7], z1[:7])
			}
		}
		refs := s.git(s.work, "-c", s.dev.GitAuth(), "ls-remote", s.srv.CloneURL(s.owner, s.repo))
		if strings.Contains(refs, "refs/sluice") {
			t.Errorf("Sluice pushed its own refs to the forge:\n%s", refs)
		}
		list, err := s.cluster.Client(t).CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{LabelSelector: manifests.LabelGate + "=" + s.gate})
		if err != nil {
			t.Fatal(err)
		}
		for _, ns := range list.Items {
			if ns.DeletionTimestamp == nil {
				t.Errorf("namespace %s left behind", ns.Name)
			}
		}
	}
	noBranchMoved()

	preview := "sluice/" + s.gate + "/preview"
	tests := []struct {
		name, sha string
		tested    bool // a pending "testing ... in <namespace>" came first
		state     sdk.StatusState
		desc      string // the last status's description starts so; "" for no status at all
	}{
		{"a good version bump would pass", good, true, sdk.StatusSuccess, "would pass " + s.gate + " on top of " + on},
		{"a broken version bump would fail, with the reason", bad, true, sdk.StatusFailure, "would fail " + s.gate + " on top of " + on + ": tests: test Job/a-checks-b failed"},
		{"a change to a file the queue changed asks for a rebase", clash, false, sdk.StatusError, "conflicts with environments/staging/versions/z.yaml in the queue; rebase on main"},
		{"documentation gets no status", docs, false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sts := s.allStatuses(tt.sha)
			var seq []string
			for _, st := range sts {
				seq = append(seq, st.Context+" "+string(st.State)+" "+st.Description)
			}
			t.Logf("%s: %q", tt.sha[:7], seq)
			if tt.desc == "" {
				if len(sts) != 0 {
					t.Errorf("statuses %q, want none", seq)
				}
				return
			}
			tested := false
			for _, st := range sts {
				if st.Context != preview {
					t.Errorf("status %q on a pull request's head: want only %s", st.Context, preview)
				}
			}
			for _, st := range sts[:len(sts)-1] {
				if st.State != sdk.StatusPending {
					t.Errorf("statuses %q: a %s before the verdict", seq, st.State)
				}
				tested = tested || strings.HasPrefix(st.Description, "testing on top of "+on+" in sluice-"+s.gate+"-")
			}
			if tested != tt.tested {
				t.Errorf("statuses %q: tested in a namespace %v, want %v", seq, tested, tt.tested)
			}
			last := sts[len(sts)-1]
			if last.State != tt.state || !strings.HasPrefix(last.Description, tt.desc) {
				t.Errorf("last status %q, want %s %q…", seq[len(seq)-1], tt.state, tt.desc)
			}
			if last.Creator == nil || last.Creator.UserName != s.sluice.Name {
				t.Errorf("status set by %v, want %s", last.Creator, s.sluice.Name)
			}
			if out, err := s.tryGit(s.work, "notes", "--ref=sluice", "show", tt.sha); err == nil {
				t.Errorf("a pull request's head got a verdict note:\n%s", out)
			}
		})
	}

	// A new push to the good pull request: its new head is judged.
	good2 := s.bumpAInstead()
	s.waitPullHead(prGood, good2)
	if r := s.runOnce(cfg); r.code != 0 {
		t.Fatalf("second sluice run --once exited %d", r.code)
	}
	s.fetch()
	noBranchMoved()
	sts := s.allStatuses(good2)
	if len(sts) == 0 {
		t.Fatalf("no status on the pull request's new head %s", good2[:7])
	}
	if last := sts[len(sts)-1]; last.Context != preview || last.State != sdk.StatusSuccess || !strings.HasPrefix(last.Description, "would pass "+s.gate+" on top of "+on) {
		t.Errorf("new head's last status %s %s %q, want %s success \"would pass…\"", last.Context, last.State, last.Description, preview)
	}
	if sts := s.allStatuses(good); sts[len(sts)-1].State != sdk.StatusSuccess {
		t.Errorf("the old head's status changed to %s", sts[len(sts)-1].State)
	}
}

// version2 is version's content alone.
func version2(svc, tag string) string { _, c := version(svc, tag); return c }

// TestForgePullRequestPreviewsInTheDaemon runs two `sluice run
// --leader-elect` polling every second beside a pull request: the replica
// that leads the gate tests it once, however many drains follow, and the
// other never; a push to the pull request is tested once more, on its new
// head.
func TestForgePullRequestPreviewsInTheDaemon(t *testing.T) {
	srv := gitea.Start(t)
	s := newForgeScenario(t, srv, "daemon")
	kube := s.cluster.Client(t)
	leaseNS := "sluice-le-" + randHex(3)
	if _, err := kube.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: leaseNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kube.CoreV1().Namespaces().Delete(context.Background(), leaseNS, metav1.DeleteOptions{}) })
	base := s.git(s.work, "rev-parse", "HEAD")
	good := s.branch("bump-a", base, "bump A to v3", pair(version("a", "v3"))...)
	pr := s.openPull("bump-a", "bump A to v3", good)

	cfg := s.config(s.sluice.Token)
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, append(b, "pollInterval: 1s\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	ev := &events{}
	var daemons []*daemon
	for _, name := range []string{"one", "two"} {
		args := append([]string{"run", "--config", cfg, "--kubeconfig", s.cluster.Kubeconfig, "--log-level", "debug", "--leader-elect", "--leader-elect-namespace", leaseNS}, leaseFlags...)
		cmd := exec.Command(sluiceBin, args...)
		cmd.Dir = s.dir
		cmd.Stdout = &lineWriter{ev: ev, from: name}
		cmd.Stderr = &lineWriter{ev: ev, from: name + "-log"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		d := &daemon{name: name, cmd: cmd, done: make(chan struct{})}
		go func() { _ = cmd.Wait(); close(d.done) }()
		t.Cleanup(func() { d.signal(syscall.SIGKILL) })
		daemons = append(daemons, d)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, e := range ev.snapshot() {
				t.Logf("%s: %s", e.from, e.text)
			}
		}
	})
	preview := "sluice/" + s.gate + "/preview"
	passed := func(sha string) func() bool {
		return func() bool {
			sts := s.allStatuses(sha)
			return len(sts) > 0 && sts[len(sts)-1].Context == preview && sts[len(sts)-1].State == sdk.StatusSuccess
		}
	}
	waitFor(t, 3*time.Minute, "the pull request's preview to pass", passed(good))
	// The drains after the test find the head judged on that candidate.
	judged := func(head string) int {
		n := 0
		for _, e := range ev.snapshot() {
			if strings.Contains(e.text, `msg="pull request already judged on this candidate"`) && strings.Contains(e.text, "head="+head[:12]) {
				n++
			}
		}
		return n
	}
	waitFor(t, time.Minute, "two more drains to find the head judged", func() bool { return judged(good) >= 2 })

	good2 := s.bumpAInstead()
	s.waitPullHead(pr, good2)
	waitFor(t, 3*time.Minute, "the new head's preview to pass", passed(good2))
	for _, d := range daemons {
		d.signal(syscall.SIGTERM)
	}

	// Many drains passed meanwhile: each head was tested once, by one replica.
	tested := map[string][]string{} // head -> the replicas that tested it
	for _, e := range ev.snapshot() {
		for _, h := range []string{good, good2} {
			if strings.Contains(e.text, `msg="testing pull request"`) && strings.Contains(e.text, "head="+h[:12]) {
				tested[h] = append(tested[h], e.from)
			}
		}
	}
	for _, h := range []string{good, good2} {
		if len(tested[h]) != 1 {
			t.Errorf("head %s tested %d times (%v), want once", h[:7], len(tested[h]), tested[h])
		}
	}
	if tested[good] != nil && tested[good2] != nil && tested[good][0] != tested[good2][0] {
		t.Logf("the lead moved between the tests: %v then %v", tested[good], tested[good2])
	}
	s.fetch()
	for _, b := range []string{"main", "staging"} {
		if got := s.git(s.work, "rev-parse", "refs/remotes/gitea/"+b); got != base {
			t.Errorf("%s = %s, want %s: a pull request moves no branch", b, got[:7], base[:7])
		}
	}
}

// bumpAInstead pushes a new head to the pull request branch bump-a, A at
// v4, and returns it; the work tree is back on main.
func (s *forgeScenario) bumpAInstead() string {
	s.t.Helper()
	s.git(s.work, "checkout", "-q", "bump-a")
	if err := os.WriteFile(filepath.Join(s.work, "environments/staging/versions/a.yaml"), []byte(version2("a", "v4")), 0o644); err != nil {
		s.t.Fatal(err)
	}
	s.git(s.work, "commit", "-qam", "bump A to v4 instead")
	s.push(s.dev, "HEAD:refs/heads/bump-a")
	head := s.git(s.work, "rev-parse", "HEAD")
	s.git(s.work, "checkout", "-q", "main")
	return head
}
