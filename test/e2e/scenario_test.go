package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/manifests"
	"github.com/sluice-gitops/sluice/test/cluster"
	"github.com/sluice-gitops/sluice/test/gitserver"
)

// scenario is one desired-state repository on a Git server, seeded from
// examples/article, with a gate of its own on the shared cluster.
type scenario struct {
	t       *testing.T
	srv     *gitserver.Server
	repo    string
	work    *gitserver.Work // a team's clone
	gate    string
	dir     string
	config  string
	cluster *cluster.Cluster
	kube    kubernetes.Interface
}

type scenarioOptions struct {
	health        string // health timeout
	keepNamespace string
	extraGate     string // appended YAML under the gate
	onceAttempts  int
	auth          gitserver.Options
}

func newScenario(t *testing.T, opts scenarioOptions) *scenario {
	t.Helper()
	c := cluster.Require(t)
	if opts.health == "" {
		opts.health = "60s"
	}
	if opts.onceAttempts == 0 {
		opts.onceAttempts = 5
	}
	if opts.keepNamespace == "" {
		opts.keepNamespace = "0s"
	}
	s := &scenario{
		t:       t,
		srv:     gitserver.Start(t, opts.auth),
		repo:    "desired",
		gate:    "stg-" + randHex(3),
		dir:     t.TempDir(),
		cluster: c,
		kube:    c.Client(t),
	}
	s.srv.CreateRepo(t, s.repo)
	s.work = s.srv.Clone(t, s.repo)
	root := repoRoot(t)
	src := filepath.Join(root, "examples", "article")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s.work.Write(t, filepath.ToSlash(rel), string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.work.Commit(t, "Initial desired state")
	s.git("config", "core.logAllRefUpdates", "always")
	if err := s.work.Push(t, "HEAD:refs/heads/main", "HEAD:refs/heads/staging"); err != nil {
		t.Fatal(err)
	}
	s.srv.InstallHook(t, s.repo, "pre-receive", gitserver.ProtectBranches("main", "staging"))

	cfg := "repository:\n  url: " + s.srv.RepoURL(s.repo) + "\n" +
		"  cacheDir: cache\n" +
		"  author: {name: Sluice, email: sluice@example.com}\n" +
		"pollInterval: 1s\n" +
		"gates:\n" +
		"  - name: " + s.gate + "\n" +
		"    path: environments/staging\n" +
		"    targetBranch: staging\n" +
		"    timeouts: {apply: 30s, health: " + opts.health + ", tests: 60s}\n" +
		"    onFailure: {keepNamespace: " + opts.keepNamespace + "}\n" +
		"    retry: {initialBackoff: 1s, maxBackoff: 4s, onceAttempts: " + strconv.Itoa(opts.onceAttempts) + "}\n" + opts.extraGate
	s.config = filepath.Join(s.dir, "sluice.yaml")
	if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.assertNoNamespacesLeft() })
	return s
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func repoRoot(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// version writes one service's version file for staging.
func version(svc, tag string) (string, string) {
	return "environments/staging/versions/" + svc + ".yaml",
		"# Service " + svc + "'s version in staging. Team " + svc + " owns this file: a bump is a one-line change here.\n" +
			"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: " + svc + "\nspec:\n  template:\n    spec:\n      containers:\n        - name: " + svc + "\n          image: registry.example.com/" + svc + ":" + tag + "\n"
}

// push commits files as author and pushes to main, pulling first like a
// person would. It returns the commit's sha.
func (s *scenario) push(author, msg string, files ...string) string {
	s.t.Helper()
	s.work.Pull(s.t)
	for i := 0; i+1 < len(files); i += 2 {
		s.work.Write(s.t, files[i], files[i+1])
	}
	s.work.Git(s.t, "config", "user.name", author)
	sha := s.work.Commit(s.t, msg)
	if err := s.work.Push(s.t, "HEAD:refs/heads/main"); err != nil {
		s.t.Fatal(err)
	}
	return sha
}

type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// sluice runs the real binary with the scenario's config and kubeconfig.
func (s *scenario) sluice(ctx context.Context, env []string, args ...string) result {
	s.t.Helper()
	args = append(args, "--config", s.config)
	if args[0] == "run" {
		args = append(args, "--kubeconfig", s.cluster.Kubeconfig, "--progress", "always")
	}
	cmd := exec.CommandContext(ctx, sluiceBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
		} else {
			s.t.Fatalf("run sluice: %v", err)
		}
	}
	s.t.Logf("sluice %s (exit %d, %s)\n--- stdout\n%s--- stderr\n%s", strings.Join(args[:1], " "), r.code, r.took.Round(time.Millisecond), r.stdout, r.stderr)
	return r
}

func (s *scenario) runOnce(env ...string) result {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	return s.sluice(ctx, env, "run", "--once")
}

// git runs git in the server's bare repository.
func (s *scenario) git(args ...string) string {
	s.t.Helper()
	out, err := s.tryGit(args...)
	if err != nil {
		s.t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func (s *scenario) tryGit(args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Env = append(os.Environ(), "GIT_DIR="+s.srv.RepoDir(s.repo), "GIT_CONFIG_NOSYSTEM=1", "HOME="+s.dir)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%v: %s", err, errb.String())
	}
	return out.String(), nil
}

// tip is a branch's value on the server.
func (s *scenario) tip(branch string) string {
	s.t.Helper()
	return strings.TrimSpace(s.git("rev-parse", "refs/heads/"+branch))
}

// note reads the gate's record of a commit from refs/notes/sluice on the server.
func (s *scenario) note(sha string) (gitrepo.Record, bool) {
	s.t.Helper()
	out, err := s.tryGit("notes", "--ref=sluice", "show", sha)
	if err != nil {
		return gitrepo.Record{}, false
	}
	n, err := gitrepo.DecodeNote([]byte(out))
	if err != nil {
		s.t.Fatalf("note of %s does not decode: %v\n%s", sha, err, out)
	}
	return n.Get(s.gate)
}

func (s *scenario) mustNote(sha, verdict string) gitrepo.Record {
	s.t.Helper()
	rec, ok := s.note(sha)
	if !ok {
		s.t.Fatalf("no note of gate %s on %s", s.gate, sha[:7])
	}
	if rec.Verdict != verdict {
		s.t.Fatalf("verdict of %s = %s, want %s (reason: %s)", sha[:7], rec.Verdict, verdict, rec.Reason)
	}
	return rec
}

// file is a file's content at a revision on the server.
func (s *scenario) file(rev, path string) string {
	s.t.Helper()
	return s.git("show", rev+":"+path)
}

// refs is every ref on the server with its value, to compare before and after.
func (s *scenario) refs() string {
	s.t.Helper()
	return s.git("for-each-ref", "--format=%(refname) %(objectname)")
}

// history lists the values a branch has had on the server (its reflog).
func (s *scenario) history(branch string) []string {
	s.t.Helper()
	out := s.git("reflog", "show", "--format=%H", "refs/heads/"+branch)
	return strings.Fields(out)
}

// sluiceNamespaces lists the namespaces labelled as this gate's.
func (s *scenario) sluiceNamespaces() []string {
	s.t.Helper()
	list, err := s.kube.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{LabelSelector: manifests.LabelGate + "=" + s.gate})
	if err != nil {
		s.t.Fatal(err)
	}
	var names []string
	for _, ns := range list.Items {
		if ns.DeletionTimestamp == nil {
			names = append(names, ns.Name)
		}
	}
	sort.Strings(names)
	return names
}

func (s *scenario) assertNoNamespacesLeft() {
	if s.t.Failed() {
		return
	}
	if left := s.sluiceNamespaces(); len(left) > 0 {
		s.t.Errorf("namespaces of gate %s left behind: %v", s.gate, left)
	}
}

// watchNamespaces records every namespace of the gate created until stop.
func (s *scenario) watchNamespaces() (stop func() []string) {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sel := manifests.LabelGate + "=" + s.gate
	list, err := s.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		s.t.Fatal(err)
	}
	// Watch from the list's version: only namespaces created from now on.
	w, err := s.kube.CoreV1().Namespaces().Watch(ctx, metav1.ListOptions{LabelSelector: sel, ResourceVersion: list.ResourceVersion})
	if err != nil {
		s.t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.ResultChan() {
			if e.Type != watch.Added {
				continue
			}
			if m, err := metaOf(e.Object); err == nil {
				mu.Lock()
				seen = append(seen, m.GetName())
				mu.Unlock()
			}
		}
	}()
	return func() []string {
		w.Stop()
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

func metaOf(o any) (metav1.Object, error) {
	if m, ok := o.(metav1.Object); ok {
		return m, nil
	}
	return nil, os.ErrInvalid
}
