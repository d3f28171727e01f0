package reconcile

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gitops/sluice/manifests"
	"github.com/sluice-gitops/sluice/test/gitserver"
)

// hostileRenderCase is a case of the hostile corpus about what kustomize
// itself does with a commit: keys that only case-fold onto the ones it
// reads, URLs it would fetch, directory symlinks it resolves, file names its
// in-memory file system refuses, and renders that take too long or too much
// memory.
type hostileRenderCase struct {
	class string            // the class of attack, for the report
	name  string            // directory under test/testdata/hostile
	links map[string]string // symlinks the test creates: repository path -> target
	files map[string]string // files with names a checkout may not keep: path -> content
	bomb  bool              // a render that would exhaust the daemon: run alone, memory watched
	opts  manifests.RenderOptions
	want  string // in the failed verdict's reason (placeholders replaced)
}

var (
	timeLimit   = manifests.RenderOptions{RenderTimeout: 3 * time.Second}
	memoryLimit = manifests.RenderOptions{RenderTimeout: 5 * time.Minute, MaxRenderMemory: 128 << 20}
)

const stagingKust = "environments/staging/kustomization.yaml"

var hostileRenderTests = []hostileRenderCase{
	{class: "exact-key bypass", name: "case-fold-generator", want: stagingKust + `: generator ConfigMapGenerator/fetch file "@REMOTE_HTTP@/app.properties" is a remote reference`},
	{class: "exact-key bypass", name: "case-fold-transformer", want: stagingKust + `: transformer PatchTransformer/p path "@REMOTE_HTTPS@/patch.yaml" is a remote reference`},
	{class: "URL fetch", name: "url-env-file", want: stagingKust + `: env file "@REMOTE_HTTP@/app.env" is a remote reference`},
	{class: "URL fetch", name: "url-replacement", want: stagingKust + `: replacement "@REMOTE_HTTPS@/replacements.yaml" is a remote reference`},
	{class: "URL fetch", name: "url-openapi", want: stagingKust + `: openapi path "@REMOTE_HTTP@/schema.json" is a remote reference`},
	{
		class: "directory symlink", name: "symlink-base-above",
		links: map[string]string{"environments/staging/shared": "../../bases/shared"},
		want:  `environments/staging/shared/kustomization.yaml: resource "../common/settings.yaml" is read from bases/common/settings.yaml in a checkout, where symlink environments/staging/shared leads`,
	},
	{
		class: "directory symlink", name: "symlink-component-above",
		links: map[string]string{"environments/staging/debug": "../../components/debug"},
		want:  `environments/staging/debug/kustomization.yaml: patch "../replicas.yaml" is read from components/replicas.yaml in a checkout, where symlink environments/staging/debug leads`,
	},
	{
		class: "refused file name", name: "name-space",
		files: map[string]string{"environments/staging/my app.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: mine\n"},
		want:  `environments/staging/my app.yaml: has a name kustomize's in-memory file system cannot hold ("my app.yaml")`,
	},
	{
		class: "refused file name", name: "name-non-ascii",
		files: map[string]string{"environments/staging/café.properties": "greeting=bonjour\n"},
		want:  `environments/staging/café.properties: has a name kustomize's in-memory file system cannot hold ("café.properties")`,
	},
	{
		class: "refused file name", name: "name-plus-directory",
		files: map[string]string{
			"environments/staging/team+a/kustomization.yaml": "resources:\n  - settings.yaml\n",
			"environments/staging/team+a/settings.yaml":      "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: team-a\n",
		},
		want: `environments/staging/team+a/kustomization.yaml: has a name kustomize's in-memory file system cannot hold ("team+a")`,
	},
	{class: "render-time bomb", name: "time-many-patches", bomb: true, opts: timeLimit, want: stagingKust + `: the render exceeded the time limit of 3s`},
	{class: "render-time bomb", name: "time-name-suffixes", bomb: true, opts: timeLimit, want: stagingKust + `: the render exceeded the time limit of 3s`},
	{class: "render-memory bomb", name: "memory-copy-doubling", bomb: true, opts: memoryLimit, want: stagingKust + `: the render exceeded the memory limit of 128 MiB`},
	{class: "render-memory bomb", name: "memory-deployments-doubling", bomb: true, opts: memoryLimit, want: stagingKust + `: the render exceeded the memory limit of 128 MiB`},
}

// hostileRenderCases names the corpus directories TestHostileRender owns.
func hostileRenderCases() map[string]bool {
	m := map[string]bool{}
	for _, tt := range hostileRenderTests {
		m[tt.name] = true
	}
	return m
}

// TestHostileRender pushes each case as a commit to a real Git server and
// drains the queue with the real Runner: the commit fails at the render with
// a reason naming the file, field or limit, it is reverted once, the next
// good commit is tested normally, nothing is fetched, and for the bombs the
// daemon's own heap stays small (the render runs in its worker).
func TestHostileRender(t *testing.T) {
	for _, tt := range hostileRenderTests {
		if fi, err := os.Stat(filepath.Join(hostileCorpus, tt.name)); err != nil || !fi.IsDir() {
			t.Fatalf("case %s has no corpus directory: %v", tt.name, err)
		}
	}
	srv := gitserver.Start(t, gitserver.Options{})
	spies := startSpies(t, srv)
	token := "CANARY-" + randomHex(t)

	t.Run("case", func(t *testing.T) {
		for _, tt := range hostileRenderTests {
			if tt.bomb {
				continue
			}
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				runHostileRender(t, srv, spies, token, tt)
			})
		}
	})
	// The bombs one at a time, so that the heap seen is this one's.
	for _, tt := range hostileRenderTests {
		if !tt.bomb {
			continue
		}
		t.Run("bomb/"+tt.name, func(t *testing.T) {
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			var peak atomic.Uint64
			done := make(chan struct{})
			watched := make(chan struct{})
			go func() {
				defer close(watched)
				for {
					var m runtime.MemStats
					runtime.ReadMemStats(&m)
					peak.Store(max(peak.Load(), m.HeapAlloc))
					select {
					case <-done:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}()
			runHostileRender(t, srv, spies, token, tt)
			close(done)
			<-watched
			if grew := int64(peak.Load()) - int64(before.HeapAlloc); grew > 128<<20 {
				t.Errorf("the daemon's heap grew by %d MiB while it rendered the bomb", grew>>20)
			}
		})
	}
	spies.check(t)
}

func runHostileRender(t *testing.T, srv *gitserver.Server, spies *spies, token string, tt hostileRenderCase) {
	t.Helper()
	h := newHostileRepo(t, srv, "hostile-render-"+tt.name)
	canaryPath := filepath.Join(filepath.Dir(h.work.Dir), "canary.yaml")
	writeFileT(t, canaryPath, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: canary\ndata:\n  secret: "+token+"\n")
	repl := strings.NewReplacer(
		"@CANARY@", canaryPath,
		"@REMOTE_HTTP@", spies.httpURL,
		"@REMOTE_HTTPS@", spies.httpsURL,
		"@EXEC_SPY@", spies.execPath,
	)
	copyCorpus(t, filepath.Join(hostileCorpus, tt.name), h.work.Dir, repl)
	for p, content := range tt.files {
		writeFileT(t, filepath.Join(h.work.Dir, filepath.FromSlash(p)), repl.Replace(content))
	}
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

	want := repl.Replace(tt.want)
	rec := h.record(bad)
	if Verdict(rec.Verdict) != Failed || !strings.HasPrefix(rec.Reason, StepRender+": ") || !strings.Contains(rec.Reason, want) {
		t.Errorf("%s: verdict %s, reason:\n%s\nwant failed at the render with %q", tt.class, rec.Verdict, rec.Reason, want)
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
	if got := h.remote("show", "origin/staging:"+stagingKust); got != strings.TrimSpace(kustomization) {
		t.Errorf("staging's kustomization is\n%s\nwant the one before the hostile commit", got)
	}
	if strings.Contains(env.objects()+logs.text(), token) {
		t.Errorf("the canary's content was read")
	}
	if len(logs.find(slog.LevelError, "")) > 0 {
		t.Errorf("error lines logged:\n%s", logs.text())
	}
}
