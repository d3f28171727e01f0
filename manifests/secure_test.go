package manifests

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// fetchSpies puts a fake git first on PATH and starts an HTTP server, and
// returns how to tell whether either was used. Kustomize execs git to clone
// a remote base and GETs URL resources itself.
func fetchSpies(t *testing.T) (url string, gitRuns func() string, httpHits func() int32) {
	t.Helper()
	bin := t.TempDir()
	marker := filepath.Join(bin, "git-ran")
	script := "#!/bin/sh\necho \"$@\" >> '" + marker + "'\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bin, "git"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	t.Setenv("TMPDIR", t.TempDir()) // where kustomize would clone
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fetched\n")
	}))
	t.Cleanup(srv.Close)
	gitRuns = func() string {
		b, _ := os.ReadFile(marker)
		return string(b)
	}
	return srv.URL, gitRuns, hits.Load
}

// TestRenderFetchesNothing proves that remote references are refused before
// kustomize runs: kustomize, given them, runs git and makes HTTP requests
// (the control), Render does neither.
func TestRenderFetchesNothing(t *testing.T) {
	url, gitRuns, httpHits := fetchSpies(t)

	t.Run("control: kustomize alone fetches", func(t *testing.T) {
		mem := filesys.MakeFsInMemory()
		k := "resources:\n- " + url + "/cm.yaml\n- github.com/acme/infra/base?ref=v1\n"
		if err := mem.WriteFile("/env/kustomization.yaml", []byte(k)); err != nil {
			t.Fatal(err)
		}
		_, err := build(mem, "env", 1000)
		if err == nil {
			t.Fatal("kustomize built a remote base with a failing git")
		}
		if httpHits() == 0 {
			t.Error("kustomize made no HTTP request; the spy would not see one")
		}
		if gitRuns() == "" {
			t.Error("kustomize did not run git; the spy would not see it")
		}
	})
	if t.Failed() {
		return
	}
	hitsBefore, gitBefore := httpHits(), gitRuns()

	remotes := []string{
		url + "/cm.yaml",
		url + "/acme/infra.git//base",
		"github.com/acme/infra/base?ref=v1",
		"git@github.com:acme/infra.git",
		"git::" + url + "/acme/infra.git",
		"ssh://git@127.0.0.1/acme/infra.git",
		"file:///tmp/infra.git",
	}
	fields := map[string]string{
		"resource":    "resources:\n- %s\n",
		"component":   "components:\n- %s\n",
		"crd":         "crds:\n- %s\n",
		"patch":       "resources:\n- namespace.yaml\npatches:\n- path: %s\n",
		"file":        "configMapGenerator:\n- name: x\n  files:\n  - %s\n",
		"transformer": "resources:\n- namespace.yaml\ntransformers:\n- %s\n",
	}
	for field, k := range fields {
		for _, remote := range remotes {
			if field == "file" && strings.Contains(remote, "=") {
				continue // kustomize reads it as key "...?ref" and local file "v1"
			}
			t.Run(field+" "+remote, func(t *testing.T) {
				files := with(map[string]string{"environments/staging/kustomization.yaml": strings.Replace(k, "%s", remote, 1)})
				_, err := Render(context.Background(), repo(files), "environments/staging", RenderOptions{})
				var re *RenderError
				if !errors.As(err, &re) || !strings.Contains(err.Error(), "is a remote reference") {
					t.Errorf("Render = %v, want a RenderError for a remote reference", err)
				}
			})
		}
	}
	if n := httpHits() - hitsBefore; n != 0 {
		t.Errorf("Render made %d HTTP requests", n)
	}
	if runs := strings.TrimPrefix(gitRuns(), gitBefore); runs != "" {
		t.Errorf("Render ran git:\n%s", runs)
	}
}

// canary is a secret next to the repository that no render may read.
const canary = "CANARY-7f3a9c-do-not-read"

var canaryYAML = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: canary\ndata:\n  secret: " + canary + "\n"

// spyFS records every file it hands out whose content holds the canary.
type spyFS struct {
	fsys fs.ReadLinkFS
	mu   sync.Mutex
	read []string
}

func (s *spyFS) Open(name string) (fs.File, error) {
	f, err := s.fsys.Open(name)
	if err == nil {
		if data, rerr := fs.ReadFile(s.fsys, name); rerr == nil && bytes.Contains(data, []byte(canary)) {
			s.mu.Lock()
			s.read = append(s.read, name)
			s.mu.Unlock()
		}
	}
	return f, err
}

func (s *spyFS) ReadLink(name string) (string, error)   { return s.fsys.ReadLink(name) }
func (s *spyFS) Lstat(name string) (fs.FileInfo, error) { return s.fsys.Lstat(name) }

// escapes are kustomizations that try to reach the canary from
// environments/staging, with the symlinks they rely on.
var escapes = []struct {
	name  string
	kust  string
	links map[string]string // path in the repository -> symlink target
}{
	{name: "a resource above the root", kust: "resources:\n- ../../../canary.yaml\n"},
	{name: "a generator file above the root", kust: "configMapGenerator:\n- name: x\n  files:\n  - ../../../canary.yaml\n"},
	{name: "a symlinked resource", kust: "resources:\n- leak.yaml\n", links: map[string]string{"environments/staging/leak.yaml": "../../../canary.yaml"}},
	{name: "a symlinked generator file", kust: "configMapGenerator:\n- name: x\n  files:\n  - leak.yaml\n", links: map[string]string{"environments/staging/leak.yaml": "../../../canary.yaml"}},
	{name: "a symlinked patch", kust: "resources:\n- namespace.yaml\npatches:\n- path: leak.yaml\n", links: map[string]string{"environments/staging/leak.yaml": "../../../canary.yaml"}},
	{name: "a symlinked directory", kust: "resources:\n- up/canary.yaml\n", links: map[string]string{"environments/staging/up": "../../.."}},
	{name: "a symlinked base", kust: "resources:\n- up\n", links: map[string]string{"environments/staging/up": "../../.."}},
	{name: "a link to a link", kust: "resources:\n- a.yaml\n", links: map[string]string{"environments/staging/a.yaml": "b.yaml", "environments/staging/b.yaml": "../../../canary.yaml"}},
}

// TestRenderNeverReadsOutsideTheTree renders a repository that sits next to
// a canary file, through a tree rooted at the repository, and checks that
// the canary is never read, whatever the kustomization tries.
func TestRenderNeverReadsOutsideTheTree(t *testing.T) {
	t.Run("fstest.MapFS under fs.Sub", func(t *testing.T) {
		for _, tt := range escapes {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				m := fstest.MapFS{
					"canary.yaml":        {Data: []byte(canaryYAML)},
					"kustomization.yaml": {Data: []byte("resources:\n- canary.yaml\n")},
				}
				for name, data := range with(map[string]string{"environments/staging/kustomization.yaml": tt.kust}) {
					m["repo/"+name] = &fstest.MapFile{Data: []byte(data)}
				}
				for name, target := range tt.links {
					m["repo/"+name] = &fstest.MapFile{Data: []byte(target), Mode: fs.ModeSymlink}
				}
				spy := &spyFS{fsys: m}
				tree, err := fs.Sub(spy, "repo")
				if err != nil {
					t.Fatal(err)
				}
				checkNoCanary(t, tree)
				if len(spy.read) > 0 {
					t.Errorf("Render opened %v, which holds the canary", spy.read)
				}
			})
		}
	})

	t.Run("os.DirFS of a directory on disk", func(t *testing.T) {
		root := t.TempDir()
		if err := os.WriteFile(filepath.Join(root, "canary.yaml"), []byte(canaryYAML), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "kustomization.yaml"), []byte("resources:\n- canary.yaml\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		absolute := struct {
			name  string
			kust  string
			links map[string]string
		}{name: "an absolute symlink", kust: "resources:\n- leak.yaml\n", links: map[string]string{"environments/staging/leak.yaml": filepath.Join(root, "canary.yaml")}}
		for i, tt := range append(escapes, absolute) {
			t.Run(tt.name, func(t *testing.T) {
				dir := filepath.Join(root, "repo"+string(rune('a'+i)))
				for name, data := range with(map[string]string{"environments/staging/kustomization.yaml": tt.kust}) {
					writeFile(t, filepath.Join(dir, name), data)
				}
				for name, target := range tt.links {
					if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
						t.Fatal(err)
					}
				}
				tree := os.DirFS(dir)
				if len(tt.links) > 0 {
					// The control: the tree itself follows the link out.
					for name := range tt.links {
						if data, err := fs.ReadFile(tree, name); err == nil && bytes.Contains(data, []byte(canary)) {
							t.Logf("control: os.DirFS reads the canary through %s", name)
						}
					}
				}
				spy := &spyFS{fsys: tree.(fs.ReadLinkFS)}
				checkNoCanary(t, spy)
				if len(spy.read) > 0 {
					t.Errorf("Render opened %v, which holds the canary", spy.read)
				}
			})
		}
	})
}

// checkNoCanary renders environments/staging from tree and checks that it
// fails as the commit's fault and that nothing it returns holds the canary.
func checkNoCanary(t *testing.T, tree fs.FS) {
	t.Helper()
	objs, err := Render(context.Background(), tree, "environments/staging", RenderOptions{})
	for _, o := range objs {
		b, _ := o.MarshalJSON()
		if bytes.Contains(b, []byte(canary)) {
			t.Fatalf("Render returned the canary in %s", o.GetName())
		}
	}
	if err == nil {
		t.Fatalf("Render succeeded with %d objects, want an error", len(objs))
	}
	if strings.Contains(err.Error(), canary) {
		t.Fatalf("Render error holds the canary: %v", err)
	}
	var re *RenderError
	if !errors.As(err, &re) {
		t.Fatalf("Render error %v (%T) is not a *RenderError", err, err)
	}
}

func writeFile(t *testing.T, name, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
