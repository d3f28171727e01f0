package reconcile

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/manifests"
	"github.com/sluice-gitops/sluice/test/gitserver"
	"github.com/sluice-gitops/sluice/testenv"
)

// hostileCorpus holds one directory per hostile or broken repository; see
// its README for the layout and the placeholders.
var hostileCorpus = filepath.Join("..", "test", "testdata", "hostile")

// TestHostileRepositories pushes each case of the corpus as a commit to a
// real Git server and drains the queue with the real Runner: the commit
// fails at the render with a reason naming the file and what is wrong with
// it, it is reverted, the daemon goes on and tests the next good commit,
// and nothing outside the repository is read, fetched or run.
func TestHostileRepositories(t *testing.T) {
	const kfile = "environments/staging/kustomization.yaml"
	tests := []struct {
		name  string            // directory under test/testdata/hostile
		links map[string]string // symlinks the test creates: repository path -> target
		opts  manifests.RenderOptions
		want  string // in the failed verdict's reason (placeholders replaced)
	}{
		{name: "climb-out", want: kfile + `: resource "../../../canary.yaml" climbs out of the repository`},
		{name: "absolute-path", want: kfile + `: resource "@CANARY@" is an absolute path`},
		{name: "generator-file-outside", want: kfile + `: file "../../../canary.yaml" climbs out of the repository`},
		{name: "generator-file-absolute", want: kfile + `: file "@CANARY@" is an absolute path`},
		{
			name:  "symlink-relative",
			links: map[string]string{"environments/staging/leak.yaml": "../../../canary.yaml"},
			want:  kfile + `: resource "leak.yaml" goes through symlink environments/staging/leak.yaml, which points outside the repository`,
		},
		{
			name:  "symlink-absolute",
			links: map[string]string{"environments/staging/leak.yaml": "@CANARY@"},
			want:  kfile + `: resource "leak.yaml" goes through symlink environments/staging/leak.yaml, which points outside the repository`,
		},
		{
			name:  "symlink-directory",
			links: map[string]string{"environments/staging/up": "../../.."},
			want:  kfile + `: resource "up/canary.yaml" goes through symlink environments/staging/up, which points outside the repository`,
		},
		{name: "remote-base-git", want: kfile + `: resource "git::@REMOTE_HTTP@/acme/infra.git//base?ref=v1" is a remote reference`},
		{name: "remote-base-https", want: kfile + `: resource "@REMOTE_HTTPS@/acme/infra.git//base?ref=v1" is a remote reference`},
		{name: "remote-base-github", want: kfile + `: resource "github.com/acme/infra/base?ref=v1" is a remote reference`},
		{name: "remote-component", want: kfile + `: component "@REMOTE_HTTP@/acme/components.git//debug" is a remote reference`},
		{name: "url-resource", want: kfile + `: resource "@REMOTE_HTTP@/configmap.yaml" is a remote reference`},
		{name: "url-patch", want: kfile + `: patch "@REMOTE_HTTPS@/patch.yaml" is a remote reference`},
		{name: "exec-plugin", want: `environments/staging/sed.yaml: transformer SedTransformer/sed (apiVersion "someteam.example.com/v1") is not a builtin plugin`},
		{name: "exec-function-generator", want: `environments/staging/generate.yaml: generator Generate/generate is a KRM function`},
		{name: "helm-chart", want: kfile + `: uses helmCharts: Helm chart inflation is not supported`},
		{name: "helm-generator", want: `environments/staging/helm.yaml: generator HelmChartInflationGenerator/podinfo: Helm chart inflation is not supported`},
		{name: "alias-bomb", want: `environments/staging/bomb.yaml: has aliases that expand to more than 100000 extra nodes`},
		{name: "file-too-large", opts: manifests.RenderOptions{MaxFileSize: 4096}, want: `environments/staging/big.yaml: is larger than the limit of 4096 bytes`},
		{name: "deep-nesting", want: `environments/staging/deep.yaml: nests deeper than the limit of 64 levels`},
		{name: "invalid-utf8", want: `environments/staging/latin1.yaml: is not valid UTF-8`},
		{name: "duplicate-keys", want: `environments/staging/c.yaml: has the key "image" twice (lines 12 and 13)`},
		{name: "kustomization-cycle", want: `bases/two/kustomization.yaml: resource "../one" makes a kustomization cycle: bases/one -> bases/two -> bases/one`},
		{name: "too-many-objects", opts: manifests.RenderOptions{MaxObjects: 5}, want: kfile + `: renders 10 objects, more than the limit of 5`},
	}

	// The table and the corpus must name the same cases.
	entries, err := os.ReadDir(hostileCorpus)
	if err != nil {
		t.Fatal(err)
	}
	var dirs, names []string
	for _, e := range entries {
		if e.IsDir() && !hostileRenderCases()[e.Name()] { // those are TestHostileRender's
			dirs = append(dirs, e.Name())
		}
	}
	for _, tt := range tests {
		names = append(names, tt.name)
	}
	slices.Sort(names)
	if !slices.Equal(dirs, names) {
		t.Fatalf("corpus directories %v and table cases %v differ", dirs, names)
	}

	srv := gitserver.Start(t, gitserver.Options{}) // before the spies: it runs git itself
	spies := startSpies(t, srv)
	token := "CANARY-" + randomHex(t)

	t.Run("case", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				h := newHostileRepo(t, srv, "hostile-"+tt.name)
				canaryPath := filepath.Join(filepath.Dir(h.work.Dir), "canary.yaml")
				writeFileT(t, canaryPath, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: canary\ndata:\n  secret: "+token+"\n")
				repl := strings.NewReplacer(
					"@CANARY@", canaryPath,
					"@REMOTE_HTTP@", spies.httpURL,
					"@REMOTE_HTTPS@", spies.httpsURL,
					"@EXEC_SPY@", spies.execPath,
				)
				copyCorpus(t, filepath.Join(hostileCorpus, tt.name), h.work.Dir, repl)
				for p, target := range tt.links {
					if err := os.Symlink(repl.Replace(target), filepath.Join(h.work.Dir, filepath.FromSlash(p))); err != nil {
						t.Fatal(err)
					}
				}
				bad := h.work.Commit(t, "hostile: "+tt.name)
				if err := h.work.Push(t, "HEAD:refs/heads/main"); err != nil {
					t.Fatal(err)
				}
				good := h.push("bump A to v9", "environments/staging/a.yaml", deployment("a", "v9"))

				env := &leakEnv{fakeEnv: &fakeEnv{}, token: token}
				logs := &logCapture{}
				r := h.runner(env, logs)
				r.Render = tt.opts
				ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
				defer cancel()
				if err := r.RunOnce(ctx); err != nil {
					t.Fatalf("RunOnce = %v, want nil: a bad commit is reverted and the daemon goes on", err)
				}

				rec := h.record(bad)
				if Verdict(rec.Verdict) != Failed || !strings.HasPrefix(rec.Reason, StepRender+": ") || !strings.Contains(rec.Reason, repl.Replace(tt.want)) {
					t.Errorf("verdict %s, reason:\n%s\nwant failed at the render with %q", rec.Verdict, rec.Reason, repl.Replace(tt.want))
				}
				if n := h.reverts()[bad]; n != 1 || rec.RevertCommit.IsZero() {
					t.Errorf("%d reverts of the hostile commit (note says %s), want 1", n, rec.RevertCommit)
				}
				if rec := h.record(good); Verdict(rec.Verdict) != Passed || rec.Skipped {
					t.Errorf("the good commit after it: verdict %s skipped %v (%q), want passed by a test", rec.Verdict, rec.Skipped, rec.Reason)
				}
				if !slices.Contains(env.testedCommits(), good) {
					t.Errorf("the stand-in cluster tested %v, not the good commit %s", env.testedCommits(), good[:7])
				}
				main, staging := h.remote("rev-parse", "origin/main"), h.remote("rev-parse", "origin/staging")
				if staging != main {
					t.Errorf("staging = %s, want main's tip %s (the revert)", staging[:7], main[:7])
				}
				if got := h.remote("show", "origin/staging:environments/staging/kustomization.yaml"); got != strings.TrimSpace(kustomization) {
					t.Errorf("staging's kustomization is\n%s\nwant the one before the hostile commit", got)
				}

				// The canary's content is nowhere.
				for what, text := range map[string]string{
					"a note":            h.remote("log", "-p", "--format=%H", "refs/notes/sluice"),
					"a commit message":  h.remote("log", "--format=%B", "origin/main"),
					"a log line":        logs.text(),
					"a rendered object": env.objects(),
				} {
					if strings.Contains(text, token) {
						t.Errorf("the canary's content is in %s:\n%s", what, text)
					}
				}
				if len(logs.find(slog.LevelError, "")) > 0 {
					t.Errorf("error lines logged:\n%s", logs.text())
				}
			})
		}
	})
	spies.check(t)
}

// spies tell whether anything reached for the network or ran a program:
// a fake git first on PATH that records each run (kustomize runs git to
// clone a remote base), HTTP and HTTPS listeners that count requests (the
// "remote" URLs of the corpus) and a script that records being run (the
// exec plugins of the corpus).
type spies struct {
	httpURL, httpsURL string
	hits              atomic.Int64
	gitLog            string
	execPath, execRan string
}

// startSpies sets them up. The fake git lets the git processes of srv and
// of its working clones through to the real git: they run with a
// GIT_CONFIG_GLOBAL under srv's directory, which nothing else has.
func startSpies(t *testing.T, srv *gitserver.Server) *spies {
	t.Helper()
	realGit, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &spies{
		gitLog:   filepath.Join(dir, "git-runs.log"),
		execPath: filepath.Join(dir, "exec-spy"),
		execRan:  filepath.Join(dir, "exec-spy.ran"),
	}
	bin := filepath.Join(dir, "bin")
	harness := filepath.Dir(srv.Root)
	writeFileT(t, filepath.Join(bin, "git"), "#!/bin/sh\n"+
		"case \"$GIT_CONFIG_GLOBAL\" in\n"+
		shQuote(harness)+"/*) exec "+shQuote(realGit)+" \"$@\" ;;\n"+
		"esac\n"+
		"printf '%s\\n' \"git $*\" >> "+shQuote(s.gitLog)+"\n"+
		"exit 1\n")
	writeFileT(t, s.execPath, "#!/bin/sh\necho \"$0 $*\" >> "+shQuote(s.execRan)+"\n")
	for _, p := range []string{filepath.Join(bin, "git"), s.execPath} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))

	count := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		fmt.Fprint(w, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fetched\n")
	})
	plain := httptest.NewServer(count)
	t.Cleanup(plain.Close)
	tls := httptest.NewTLSServer(count)
	t.Cleanup(tls.Close)
	s.httpURL, s.httpsURL = plain.URL, tls.URL

	// The controls: each spy sees what it is there to see.
	if out, err := exec.Command("git", "ls-remote", s.httpURL+"/x.git").CombinedOutput(); err == nil {
		t.Fatalf("control: the fake git succeeded: %s", out)
	}
	if b, _ := os.ReadFile(s.gitLog); !strings.Contains(string(b), "git ls-remote") {
		t.Fatalf("control: the fake git did not record a run: %q", b)
	}
	resp, err := plain.Client().Get(s.httpURL + "/control")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = tls.Client().Get(s.httpsURL + "/control")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := exec.Command(s.execPath).Run(); err != nil {
		t.Fatal(err)
	}
	if n := s.hits.Load(); n != 2 {
		t.Fatalf("control: the listeners counted %d requests, want 2", n)
	}
	if _, err := os.Stat(s.execRan); err != nil {
		t.Fatalf("control: the exec spy did not record its run: %v", err)
	}
	s.hits.Store(0)
	for _, p := range []string{s.gitLog, s.execRan} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// check fails t if any spy saw something.
func (s *spies) check(t *testing.T) {
	t.Helper()
	if b, err := os.ReadFile(s.gitLog); err == nil {
		t.Errorf("git was run:\n%s", b)
	}
	if n := s.hits.Load(); n != 0 {
		t.Errorf("the remote listeners got %d requests", n)
	}
	if b, err := os.ReadFile(s.execRan); err == nil {
		t.Errorf("a plugin was run:\n%s", b)
	}
}

// hostileRepo is a desired-state repository on a test server: main and
// staging at a good commit of environments/staging, branch protection on.
type hostileRepo struct {
	t    *testing.T
	srv  *gitserver.Server
	name string
	url  string
	work *gitserver.Work
}

func newHostileRepo(t *testing.T, srv *gitserver.Server, name string) *hostileRepo {
	t.Helper()
	h := &hostileRepo{t: t, srv: srv, name: name, url: srv.CreateRepo(t, name)}
	h.work = srv.Clone(t, name)
	h.work.Write(t, "environments/staging/kustomization.yaml", kustomization)
	h.work.Write(t, "environments/staging/a.yaml", deployment("a", "v2"))
	h.work.Write(t, "environments/staging/b.yaml", deployment("b", "v3"))
	h.work.Commit(t, "initial")
	if err := h.work.Push(t, "HEAD:refs/heads/main", "HEAD:refs/heads/staging"); err != nil {
		t.Fatal(err)
	}
	srv.InstallHook(t, name, "pre-receive", gitserver.ProtectBranches("main", "staging"))
	return h
}

// runner is a Runner of the gate "staging" over the repository, with a
// local cache on disk, env as the cluster and every log line in logs.
func (h *hostileRepo) runner(env Tester, logs *logCapture) *Runner {
	h.t.Helper()
	repo, err := gitrepo.Open(context.Background(), gitrepo.Options{
		URL:    h.url,
		Dir:    filepath.Join(h.t.TempDir(), "cache"),
		Author: gitrepo.Signature{Name: "Sluice", Email: "sluice@example.com"},
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return &Runner{
		Repo:   repo,
		Source: "main",
		Gates: []Gate{{
			Name: "staging", Path: "environments/staging", Target: "staging", Revert: true,
			ApplyTimeout: time.Minute, HealthTimeout: time.Minute, TestsTimeout: time.Minute,
			InitialBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, OnceAttempts: 3,
		}},
		Env: env,
		Log: slog.New(logs),
		Key: testKey,
	}
}

// push commits content at path on top of main and pushes it.
func (h *hostileRepo) push(msg, path, content string) string {
	h.t.Helper()
	h.work.Pull(h.t)
	h.work.Write(h.t, path, content)
	sha := h.work.Commit(h.t, msg)
	if err := h.work.Push(h.t, "HEAD:refs/heads/main"); err != nil {
		h.t.Fatal(err)
	}
	return sha
}

// remote runs git in the working clone after fetching every branch and
// the notes from the server.
func (h *hostileRepo) remote(args ...string) string {
	h.t.Helper()
	h.work.Git(h.t, "fetch", "-q", "origin", "+refs/heads/*:refs/remotes/origin/*", "+refs/notes/*:refs/notes/*")
	return strings.TrimSpace(h.work.Git(h.t, args...))
}

// record is the gate staging's record in the note of sha on the server.
func (h *hostileRepo) record(sha string) gitrepo.Record {
	h.t.Helper()
	n, err := gitrepo.DecodeNote([]byte(h.remote("notes", "--ref=sluice", "show", sha)))
	if err != nil {
		h.t.Fatal(err)
	}
	rec, ok := n.Get("staging")
	if !ok {
		h.t.Fatalf("no staging record on %s", sha[:7])
	}
	return rec
}

// notes maps each commit on main with a note on the server to its staging record.
func (h *hostileRepo) notes() map[string]gitrepo.Record {
	h.t.Helper()
	out := map[string]gitrepo.Record{}
	log := h.remote("log", "--notes=sluice", "--format=%H%x00%N%x01", "origin/main")
	for _, entry := range strings.Split(log, "\x01") {
		sha, note, ok := strings.Cut(strings.TrimSpace(entry), "\x00")
		if !ok || strings.TrimSpace(note) == "" {
			continue
		}
		n, err := gitrepo.DecodeNote([]byte(note))
		if err != nil {
			h.t.Fatalf("note on %s: %v\n%s", sha[:7], err, note)
		}
		if rec, ok := n.Get("staging"); ok {
			out[sha] = rec
		}
	}
	return out
}

// hasNote reports whether the server has a note on sha.
func (h *hostileRepo) hasNote(sha string) bool {
	h.t.Helper()
	return h.remote("log", "-1", "--notes=sluice", "--format=%N", sha) != ""
}

// reverts counts, per rejected commit, the commits on main whose
// Sluice-Rejected trailer names it.
func (h *hostileRepo) reverts() map[string]int {
	h.t.Helper()
	out := map[string]int{}
	for _, v := range strings.Fields(h.remote("log", "--format=%(trailers:key=Sluice-Rejected,valueonly)", "origin/main")) {
		out[v]++
	}
	return out
}

// leakEnv is the stand-in cluster that also keeps what it was given to
// deploy, to look for a canary in it.
type leakEnv struct {
	*fakeEnv
	token string

	mu       sync.Mutex
	rendered bytes.Buffer
}

func (e *leakEnv) Test(ctx context.Context, spec testenv.TestSpec, onStep testenv.StepFunc) (map[string]time.Duration, error) {
	e.mu.Lock()
	for _, o := range spec.Objects {
		b, _ := o.MarshalJSON()
		e.rendered.Write(b)
		e.rendered.WriteByte('\n')
	}
	e.mu.Unlock()
	return e.fakeEnv.Test(ctx, spec, onStep)
}

func (e *leakEnv) objects() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rendered.String()
}

func (f *fakeEnv) testedCommits() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.tested)
}

// logCapture is a slog.Handler that keeps every record, and its text as
// slog's TextHandler writes it, at every level.
type logCapture struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	recs  []logRecord
	attrs []slog.Attr // of a handler made by WithAttrs
	group string
	root  *logCapture
}

type logRecord struct {
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

func (c *logCapture) base() *logCapture {
	if c.root != nil {
		return c.root
	}
	return c
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }

func (c *logCapture) Handle(ctx context.Context, r slog.Record) error {
	b := c.base()
	rec := logRecord{Level: r.Level, Msg: r.Message, Attrs: map[string]string{}}
	add := func(a slog.Attr) bool {
		k := a.Key
		if c.group != "" {
			k = c.group + "." + k
		}
		rec.Attrs[k] = a.Value.Resolve().String()
		return true
	}
	for _, a := range c.attrs {
		add(a)
	}
	r.Attrs(add)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.recs = append(b.recs, rec)
	var h slog.Handler = slog.NewTextHandler(&b.buf, &slog.HandlerOptions{Level: slog.LevelDebug})
	h = h.WithAttrs(c.attrs)
	if c.group != "" {
		h = h.WithGroup(c.group)
	}
	return h.Handle(ctx, r)
}

func (c *logCapture) WithAttrs(as []slog.Attr) slog.Handler {
	return &logCapture{root: c.base(), attrs: append(slices.Clip(c.attrs), as...), group: c.group}
}

func (c *logCapture) WithGroup(name string) slog.Handler {
	g := name
	if c.group != "" {
		g = c.group + "." + name
	}
	return &logCapture{root: c.base(), attrs: c.attrs, group: g}
}

// text is every line logged so far.
func (c *logCapture) text() string {
	b := c.base()
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// find returns the records at level whose message is msg ("" for any).
func (c *logCapture) find(level slog.Level, msg string) []logRecord {
	b := c.base()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []logRecord
	for _, r := range b.recs {
		if r.Level == level && (msg == "" || r.Msg == msg) {
			out = append(out, r)
		}
	}
	return out
}

// copyCorpus copies the files under dir into the working tree root,
// replacing the placeholders.
func copyCorpus(t *testing.T, dir, root string, repl *strings.Replacer) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		writeFileT(t, filepath.Join(root, rel), repl.Replace(string(b)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func writeFileT(t *testing.T, name, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
