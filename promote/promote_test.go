package promote

import (
	"fmt"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/test/gitserver"
)

var rule = Rule{Gate: "shared-dev", GatePath: "environments/shared-dev", To: "staging", ToPath: "environments/staging", Paths: []string{"versions/*.yaml"}}

func TestMatchAndTarget(t *testing.T) {
	for _, tc := range []struct {
		path, rel, target string
		ok                bool
	}{
		{"environments/shared-dev/versions/a.yaml", "versions/a.yaml", "environments/staging/versions/a.yaml", true},
		{"environments/shared-dev/versions/sub/a.yaml", "", "", false}, // * does not cross /
		{"environments/shared-dev/kustomization.yaml", "", "", false},
		{"environments/staging/versions/a.yaml", "", "", false},
		{"environments/shared-devx/versions/a.yaml", "", "", false},
		{"environments/shared-dev/versions/a.yml", "", "", false},
	} {
		rel, ok := rule.Match(tc.path)
		if rel != tc.rel || ok != tc.ok {
			t.Errorf("Match(%q) = %q, %v; want %q, %v", tc.path, rel, ok, tc.rel, tc.ok)
		}
		if ok {
			if got := rule.Target(tc.path); got != tc.target {
				t.Errorf("Target(%q) = %q, want %q", tc.path, got, tc.target)
			}
		}
	}
}

func TestServiceAndSummary(t *testing.T) {
	for _, tc := range []struct{ path, service string }{
		{"a/versions/a.yaml", "a"}, {"x/checkout.patch.yaml", "checkout"}, {"x/noext", "noext"},
	} {
		if got := Service(tc.path); got != tc.service {
			t.Errorf("Service(%q) = %q, want %q", tc.path, got, tc.service)
		}
	}
	for _, tc := range []struct{ data, want string }{
		{"spec:\n  template:\n    spec:\n      containers:\n        - name: a\n          image: registry.example.com:5000/a:v3\n", "v3"},
		{"image: registry.example.com:5000/a\n", ""}, // a port is no tag
		{"image: a@sha256:abcd\n", ""},
		{"version: 1.2.3\nimage: a:v9\n", "1.2.3"},
		{"  tag: \"v4\"\n", "v4"},
		{"kind: ConfigMap\n", ""},
		{"image: a:" + strings.Repeat("x", 80) + "\n", ""},
	} {
		if got := Summary([]byte(tc.data)); got != tc.want {
			t.Errorf("Summary(%q) = %q, want %q", tc.data, got, tc.want)
		}
	}
}

func TestUnmatched(t *testing.T) {
	fsys := fstest.MapFS{
		"environments/shared-dev/versions/a.yaml":   {Data: []byte("a")},
		"environments/shared-dev/versions/dir.yaml": {Mode: 0o755 | 1<<31}, // a directory named like a file
	}
	for _, tc := range []struct {
		paths []string
		want  int
	}{
		{[]string{"versions/*.yaml"}, -1},
		{[]string{"versions/*.yaml", "versions/*.json"}, 1},
		{[]string{"nothing/*"}, 0},
		{[]string{"versions/dir.yaml"}, 0},
	} {
		r := rule
		r.Paths = tc.paths
		got, err := r.Unmatched(fsys)
		if err != nil || got != tc.want {
			t.Errorf("Unmatched(%v) = %d, %v; want %d", tc.paths, got, err, tc.want)
		}
	}
}

func TestConflict(t *testing.T) {
	h := func(b byte) plumbing.Hash { return plumbing.Hash{b} }
	index := map[plumbing.Hash]int{h(1): 0, h(2): 1, h(3): 2, h(4): 3}
	for _, tc := range []struct {
		name  string
		edits []plumbing.Hash
		from  plumbing.Hash
		want  plumbing.Hash
		ok    bool
	}{
		{"no edit", nil, h(2), plumbing.ZeroHash, false},
		{"edit before from", []plumbing.Hash{h(1)}, h(2), plumbing.ZeroHash, false},
		{"edit by from itself", []plumbing.Hash{h(2)}, h(2), h(2), true},
		{"edit after from: the newest is named", []plumbing.Hash{h(1), h(3), h(4)}, h(2), h(4), true},
		{"from off the first-parent line", []plumbing.Hash{h(1)}, h(9), h(1), true},
	} {
		by, ok := conflict(tc.edits, index, tc.from)
		if by != tc.want || ok != tc.ok {
			t.Errorf("%s: conflict = %s, %v; want %s, %v", tc.name, by, ok, tc.want, tc.ok)
		}
	}
}

// fixture is a desired-state repository with shared-dev promoting to
// staging, on the test Git server.
type fixture struct {
	t    *testing.T
	work *gitserver.Work
	repo *gitrepo.Repository
	key  *gitrepo.VerdictKey
}

func deployment(name, v string) string {
	return fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: %[1]s\nspec:\n  template:\n    spec:\n      containers:\n        - name: %[1]s\n          image: registry.example.com/%[1]s:%[2]s\n", name, v)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := gitserver.Start(t, gitserver.Options{})
	url := srv.CreateRepo(t, "desired")
	w := srv.Clone(t, "desired")
	for _, env := range []string{"shared-dev", "staging"} {
		w.Write(t, "environments/"+env+"/versions/a.yaml", deployment("a", "v2"))
		w.Write(t, "environments/"+env+"/versions/b.yaml", deployment("b", "v3"))
	}
	w.Commit(t, "initial")
	if err := w.Push(t, "HEAD:refs/heads/main", "HEAD:refs/heads/shared-dev"); err != nil {
		t.Fatal(err)
	}
	srv.InstallHook(t, "desired", "pre-receive", gitserver.ProtectBranches("main", "shared-dev"))
	repo, err := gitrepo.Open(t.Context(), gitrepo.Options{URL: url, Author: gitrepo.Signature{Name: "Sluice", Email: "sluice@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repo.Close() })
	key, err := gitrepo.NewVerdictKey([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, work: w, repo: repo, key: key}
}

// change commits content at path on main and pushes it.
func (f *fixture) change(msg, path, content string) plumbing.Hash {
	f.t.Helper()
	f.work.Pull(f.t)
	f.work.Write(f.t, path, content)
	h := f.work.Commit(f.t, msg)
	if err := f.work.Push(f.t, "HEAD:refs/heads/main"); err != nil {
		f.t.Fatal(err)
	}
	return plumbing.NewHash(h)
}

// judge fast-forwards shared-dev to commit and writes the gate's record,
// signed with key (nil: unsigned).
func (f *fixture) judge(commit plumbing.Hash, verdict string, key *gitrepo.VerdictKey) {
	f.t.Helper()
	ctx := f.t.Context()
	if err := f.repo.Fetch(ctx, "main", "shared-dev"); err != nil {
		f.t.Fatal(err)
	}
	old, err := f.repo.Tip(ctx, "shared-dev")
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.repo.Push(ctx, "shared-dev", old, commit); err != nil {
		f.t.Fatal(err)
	}
	rec := gitrepo.Record{Gate: "shared-dev", Verdict: verdict, Reason: "test"}
	if key != nil {
		if rec, err = key.SignRecord(commit, rec); err != nil {
			f.t.Fatal(err)
		}
	}
	if err := f.repo.SetRecord(ctx, commit, rec); err != nil {
		f.t.Fatal(err)
	}
	if err := f.repo.PushNotes(ctx); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) run(services ...string) Result {
	f.t.Helper()
	res, err := Run(f.t.Context(), Options{Repo: f.repo, Key: f.key, Source: "main", Target: "shared-dev", Services: services}, rule)
	if err != nil {
		f.t.Fatal(err)
	}
	return res
}

// staging reads a file of staging on main's tip.
func (f *fixture) staging(name string) string {
	f.t.Helper()
	f.work.Pull(f.t)
	return f.work.Git(f.t, "show", "HEAD:environments/staging/versions/"+name+".yaml")
}

func TestRunPromotesPassedOnce(t *testing.T) {
	f := newFixture(t)
	x := f.change("a v3", "environments/shared-dev/versions/a.yaml", deployment("a", "v3"))
	f.judge(x, gitrepo.VerdictPassed, f.key)
	res := f.run()
	if len(res.Promoted) != 1 || len(res.Conflicts) != 0 {
		t.Fatalf("promoted %d, conflicts %d; want 1, 0", len(res.Promoted), len(res.Conflicts))
	}
	p := res.Promoted[0]
	if want := "Promote a v3 from shared-dev to staging"; p.Subject != want {
		t.Errorf("subject %q, want %q", p.Subject, want)
	}
	if got := f.staging("a"); !strings.Contains(got, "a:v3") {
		t.Errorf("staging's a.yaml is\n%s\nwant a:v3", got)
	}
	c, err := f.repo.Commit(t.Context(), p.Commit)
	if err != nil {
		t.Fatal(err)
	}
	prom, ok := f.key.PromotionOf(c)
	if !ok || prom.From != x || prom.Gate != "shared-dev" || prom.Path != "environments/shared-dev/versions/a.yaml" {
		t.Errorf("PromotionOf = %+v, %v", prom, ok)
	}
	if c.Trailers.Get(gitrepo.TrailerPromotedFrom) != x.String() || c.Trailers.Get(gitrepo.TrailerGate) != "shared-dev" {
		t.Errorf("trailers %v", c.Trailers)
	}
	// Another key does not take it for its own.
	other, _ := gitrepo.NewVerdictKey([]byte(strings.Repeat("o", 32)))
	if _, ok := other.PromotionOf(c); ok {
		t.Error("another key verified the promotion")
	}
	// Again, and again after someone moved staging's file back by hand:
	// the signed trailer says it was promoted; nothing is written twice.
	for i := range 2 {
		tip := f.work.Git(t, "rev-parse", "HEAD")
		if res := f.run(); len(res.Promoted) != 0 || len(res.Already) != 1 {
			t.Fatalf("run %d: promoted %d, already %d; want 0, 1", i+2, len(res.Promoted), len(res.Already))
		}
		f.work.Pull(t)
		if got := f.work.Git(t, "rev-parse", "HEAD"); got != tip {
			t.Fatalf("run %d moved main from %s to %s", i+2, tip, got)
		}
		if i == 0 {
			f.change("staging a back to v2", "environments/staging/versions/a.yaml", deployment("a", "v2"))
		}
	}
}

func TestRunPromotesOnlyVerifiedPasses(t *testing.T) {
	forger, _ := gitrepo.NewVerdictKey([]byte(strings.Repeat("f", 32)))
	for _, tc := range []struct {
		name    string
		verdict string
		signed  func(f *fixture) *gitrepo.VerdictKey
		want    int
	}{
		{"passed", gitrepo.VerdictPassed, func(f *fixture) *gitrepo.VerdictKey { return f.key }, 1},
		{"failed", gitrepo.VerdictFailed, func(f *fixture) *gitrepo.VerdictKey { return f.key }, 0},
		{"error", gitrepo.VerdictError, func(f *fixture) *gitrepo.VerdictKey { return f.key }, 0},
		{"unsigned passed", gitrepo.VerdictPassed, func(*fixture) *gitrepo.VerdictKey { return nil }, 0},
		{"passed signed by another key", gitrepo.VerdictPassed, func(*fixture) *gitrepo.VerdictKey { return forger }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			x := f.change("b v4", "environments/shared-dev/versions/b.yaml", deployment("b", "v4"))
			f.judge(x, tc.verdict, tc.signed(f))
			res := f.run()
			if len(res.Promoted) != tc.want {
				t.Fatalf("promoted %d, want %d", len(res.Promoted), tc.want)
			}
			if got := f.staging("b"); strings.Contains(got, "b:v4") != (tc.want == 1) {
				t.Errorf("staging's b.yaml is\n%s", got)
			}
		})
	}
}

func TestRunCopiedTrailerIsNotAPromotion(t *testing.T) {
	f := newFixture(t)
	x := f.change("a v3", "environments/shared-dev/versions/a.yaml", deployment("a", "v3"))
	f.judge(x, gitrepo.VerdictPassed, f.key)
	// A person's commit with Sluice's trailers copied, which changes no file
	// of staging: it proves nothing.
	f.work.Pull(t)
	f.work.Write(t, "README", "x")
	msg := gitrepo.PromotionMessage("shared-dev", "staging", "a", "v3", x, "environments/shared-dev/versions/a.yaml", "environments/staging/versions/a.yaml") +
		"Sluice-Signature: hmac-sha256:" + strings.Repeat("0", 64) + "\n"
	f.work.Commit(t, msg)
	if err := f.work.Push(t, "HEAD:refs/heads/main"); err != nil {
		t.Fatal(err)
	}
	if res := f.run(); len(res.Promoted) != 1 {
		t.Fatalf("promoted %d, want 1", len(res.Promoted))
	}
}

func TestRunReportsConflict(t *testing.T) {
	f := newFixture(t)
	x := f.change("a v3", "environments/shared-dev/versions/a.yaml", deployment("a", "v3"))
	// Someone edits staging's a.yaml after a v3 entered shared-dev.
	f.change("staging a v9 by hand", "environments/staging/versions/a.yaml", deployment("a", "v9"))
	f.judge(x, gitrepo.VerdictPassed, f.key)
	tip := f.work.Git(t, "rev-parse", "HEAD")
	res := f.run()
	if len(res.Promoted) != 0 || len(res.Conflicts) != 1 {
		t.Fatalf("promoted %d, conflicts %d; want 0, 1", len(res.Promoted), len(res.Conflicts))
	}
	if c := res.Conflicts[0]; c.Target != "environments/staging/versions/a.yaml" || c.EditedBy.String() != tip {
		t.Errorf("conflict %+v, want edited by %s", c, tip)
	}
	if got := f.staging("a"); !strings.Contains(got, "a:v9") {
		t.Errorf("staging's a.yaml changed:\n%s", got)
	}
}

func TestRunServicesAndOnePerFile(t *testing.T) {
	f := newFixture(t)
	f.work.Pull(t)
	f.work.Write(t, "environments/shared-dev/versions/a.yaml", deployment("a", "v3"))
	f.work.Write(t, "environments/shared-dev/versions/b.yaml", deployment("b", "v4"))
	x := plumbing.NewHash(f.work.Commit(t, "a v3 and b v4"))
	if err := f.work.Push(t, "HEAD:refs/heads/main"); err != nil {
		t.Fatal(err)
	}
	f.judge(x, gitrepo.VerdictPassed, f.key)
	if res := f.run("b"); len(res.Promoted) != 1 || Service(res.Promoted[0].Path) != "b" {
		t.Fatalf("promoted %+v, want b alone", res.Promoted)
	}
	res := f.run()
	if len(res.Promoted) != 1 || Service(res.Promoted[0].Path) != "a" || len(res.Already) != 1 {
		t.Fatalf("promoted %+v, already %d; want a, and b already", res.Promoted, len(res.Already))
	}
	// One commit per file.
	f.work.Git(t, "fetch", "--quiet", "origin")
	if n := f.work.Git(t, "rev-list", "--count", x.String()+"..origin/main"); n != "2" {
		t.Errorf("%s commits after the passed one, want 2", n)
	}
}
