package manifests

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestRenderWorkerSendsNoRequest gives the render worker a kustomization
// the loader never would, with URL resources and a git base, and checks that
// nothing leaves: the worker has no HTTP transport and no git to run. The
// control is in TestRenderFetchesNothing: kustomize in this process fetches.
func TestRenderWorkerSendsNoRequest(t *testing.T) {
	url, gitRuns, httpHits := fetchSpies(t)
	for _, k := range []string{
		"resources:\n- " + url + "/cm.yaml\n",
		"resources:\n- " + url + "/acme/infra.git//base\n",
		"configMapGenerator:\n- name: x\n  files:\n  - " + url + "/app.properties\n",
		"resources:\n- cm.yaml\npatches:\n- path: " + url + "/patch.yaml\n",
	} {
		files := map[string][]byte{
			"env/kustomization.yaml": []byte(k),
			"env/cm.yaml":            []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"),
		}
		_, err := renderInWorker(context.Background(), files, "env", DefaultRenderOptions())
		var re *RenderError
		if !errors.As(err, &re) {
			t.Errorf("%q: renderInWorker = %v, want a RenderError", k, err)
		}
	}
	if n := httpHits(); n != 0 {
		t.Errorf("the render worker made %d HTTP requests", n)
	}
	if runs := gitRuns(); runs != "" {
		t.Errorf("the render worker ran git:\n%s", runs)
	}
}

// TestRenderRefusesConfigsThatOnlyCaseFold checks plugin configs whose
// apiVersion, kind or items keys only case-fold onto the real ones (a Kelvin
// sign for K, a long s for s): kustomize reads exact keys, so the loader
// must too, or it checks a List of nothing where kustomize runs a generator
// that fetches a URL.
func TestRenderRefusesConfigsThatOnlyCaseFold(t *testing.T) {
	url, _, httpHits := fetchSpies(t)
	const kfile = "environments/staging/kustomization.yaml"
	const kelvinKind, longItems = "\u212Aind", "item\u017F"
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{
			name: "a generator file hidden behind a List",
			files: with(map[string]string{
				kfile: "resources:\n- namespace.yaml\ngenerators:\n- gen.yaml\n",
				"environments/staging/gen.yaml": "apiVersion: builtin\nkind: ConfigMapGenerator\nmetadata:\n  name: x\n" +
					kelvinKind + ": List\n" + longItems + ": []\nfiles:\n- " + url + "/app.properties\n",
			}),
			want: `generator ConfigMapGenerator/x file "` + url + `/app.properties" is a remote reference`,
		},
		{
			name: "an inline patch transformer hidden behind a List",
			files: with(map[string]string{
				kfile: "resources:\n- namespace.yaml\ntransformers:\n- |-\n  apiVersion: builtin\n  kind: PatchTransformer\n  metadata:\n    name: p\n  " +
					kelvinKind + ": ConfigMapList\n  " + longItems + ":\n  - {apiVersion: builtin, kind: NamespaceTransformer, metadata: {name: n}}\n  path: " + url + "/patch.yaml\n",
			}),
			want: `transformer PatchTransformer/p path "` + url + `/patch.yaml" is a remote reference`,
		},
		{
			name: "a plugin that claims builtin under a case-folded apiVersion",
			files: with(map[string]string{
				kfile: "resources:\n- namespace.yaml\ngenerators:\n- gen.yaml\n",
				"environments/staging/gen.yaml": "apiVersion: someteam.example.com/v1\napiVer\u017Fion: builtin\nkind: ConfigMapGenerator\nmetadata:\n  name: x\n" +
					"envs:\n- " + url + "/app.env\n",
			}),
			want: `generator ConfigMapGenerator/x (apiVersion "someteam.example.com/v1") is not a builtin plugin`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Render(context.Background(), repo(tt.files), "environments/staging", RenderOptions{})
			var re *RenderError
			if !errors.As(err, &re) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Render = %v\nwant a RenderError with %q", err, tt.want)
			}
		})
	}
	if n := httpHits(); n != 0 {
		t.Errorf("the renders made %d HTTP requests", n)
	}
}

// TestRenderRefusesNamesKustomizeCannotHold renders files, directories and
// generator files whose names kustomize's in-memory file system refuses
// (probed: anything but letters, digits, '-', '_', '.', ':' or with "..").
// Each is the commit's fault, named, never an infrastructure error that
// would be retried forever.
func TestRenderRefusesNamesKustomizeCannotHold(t *testing.T) {
	const kfile = "environments/staging/kustomization.yaml"
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n"
	var tests []struct {
		name  string
		files map[string]string
		want  string
	}
	for i, n := range []string{"my app.yaml", "a+b.yaml", "~backup.yaml", "café.yaml", "日本.yaml", "a..b.yaml", "a#1.yaml", "a,b.yaml", "a=b.yaml", "(x).yaml"} {
		tests = append(tests, struct {
			name  string
			files map[string]string
			want  string
		}{
			name:  "resource " + n,
			files: with(map[string]string{kfile: fmt.Sprintf("resources:\n- %q\n", n), "environments/staging/" + n: fmt.Sprintf(cm, fmt.Sprint("c", i))}),
			want:  fmt.Sprintf("environments/staging/%s: has a name kustomize's in-memory file system cannot hold", n),
		})
	}
	for _, n := range []string{"team a", "team+a", "équipe"} {
		tests = append(tests, struct {
			name  string
			files map[string]string
			want  string
		}{
			name: "base directory " + n,
			files: with(map[string]string{
				kfile: fmt.Sprintf("resources:\n- %q\n", n),
				"environments/staging/" + n + "/kustomization.yaml": "resources:\n- c.yaml\n",
				"environments/staging/" + n + "/c.yaml":             fmt.Sprintf(cm, "c"),
			}),
			want: fmt.Sprintf("environments/staging/%s/kustomization.yaml: has a name kustomize's in-memory file system cannot hold (%q)", n, n),
		})
	}
	tests = append(tests, struct {
		name  string
		files map[string]string
		want  string
	}{
		name:  "generator file",
		files: with(map[string]string{kfile: "configMapGenerator:\n- name: g\n  files:\n  - app~1.properties\n", "environments/staging/app~1.properties": "x=1\n"}),
		want:  `environments/staging/app~1.properties: has a name kustomize's in-memory file system cannot hold ("app~1.properties")`,
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Render(context.Background(), repo(tt.files), "environments/staging", RenderOptions{})
			var re *RenderError
			if !errors.As(err, &re) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Render = %v\nwant a RenderError with %q", err, tt.want)
			}
		})
	}
	t.Run("a name kustomize holds renders", func(t *testing.T) {
		files := with(map[string]string{kfile: "resources:\n- a:b_c-1.yaml\n", "environments/staging/a:b_c-1.yaml": fmt.Sprintf(cm, "ok")})
		if objs := mustRender(t, repo(files), "environments/staging"); len(objs) != 1 {
			t.Errorf("rendered %d objects, want 1", len(objs))
		}
	})
}

// bombs are small kustomizations that make kustomize work for minutes or
// take GiBs (measured in process: many-patches 58 s and 12 MiB,
// name-suffixes n=10 6 s, copy-doubling n=18 18 s and 1.4 GiB).
func bombs(kind string, n int) map[string]string {
	f := map[string]string{}
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: b\n"
	switch kind {
	case "copy-doubling": // each JSON patch copy doubles the ConfigMap
		var ops strings.Builder
		for i := range n {
			fmt.Fprintf(&ops, "- {op: copy, from: /data, path: /data/k%d}\n", i)
		}
		f["k/kustomization.yaml"] = "resources:\n- cm.yaml\npatches:\n- target: {kind: ConfigMap}\n  path: double.yaml\n"
		f["k/cm.yaml"] = cm
		f["k/double.yaml"] = ops.String()
	case "many-patches": // n patches, each over 200 ConfigMaps
		var res, p strings.Builder
		for i := range 200 {
			fmt.Fprintf(&res, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c%d\n", i)
		}
		p.WriteString("resources:\n- cms.yaml\npatches:\n")
		for i := range n {
			fmt.Fprintf(&p, "- target: {kind: ConfigMap}\n  patch: |-\n    - {op: add, path: /metadata/labels, value: {l: \"%d\"}}\n", i)
		}
		f["k/kustomization.yaml"] = p.String()
		f["k/cms.yaml"] = res.String()
	case "name-suffixes": // 2^n ConfigMaps, each level a base used twice
		f["b0/kustomization.yaml"] = "resources:\n- cm.yaml\n"
		f["b0/cm.yaml"] = cm
		for i := 1; i <= n; i++ {
			for _, s := range []string{"left", "right"} {
				f[fmt.Sprintf("b%d/%s/kustomization.yaml", i, s)] = fmt.Sprintf("nameSuffix: -%s\nresources:\n- ../../b%d\n", s, i-1)
			}
			f[fmt.Sprintf("b%d/kustomization.yaml", i)] = "resources:\n- left\n- right\n"
		}
		f["k/kustomization.yaml"] = fmt.Sprintf("resources:\n- ../b%d\n", n)
	}
	return f
}

// heapWatch samples this process's heap until stop is called and returns
// the largest value seen.
func heapWatch() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > peak.Load() {
				peak.Store(m.HeapAlloc)
			}
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		return peak.Load()
	}
}

// TestRenderBounds renders the bombs under small limits: each ends with a
// RenderError that names the limit, and the test process's own heap stays
// small, since the render happens in its worker.
func TestRenderBounds(t *testing.T) {
	tests := []struct {
		name string
		tree map[string]string
		opts RenderOptions
		want string
	}{
		{name: "many patches over many objects", tree: bombs("many-patches", 150), opts: RenderOptions{RenderTimeout: 2 * time.Second}, want: "k/kustomization.yaml: the render exceeded the time limit of 2s"},
		{name: "bases multiplied by name suffixes", tree: bombs("name-suffixes", 13), opts: RenderOptions{RenderTimeout: 2 * time.Second}, want: "k/kustomization.yaml: the render exceeded the time limit of 2s"},
		{name: "JSON patches that double an object", tree: bombs("copy-doubling", 30), opts: RenderOptions{RenderTimeout: 5 * time.Minute, MaxRenderMemory: 128 << 20}, want: "k/kustomization.yaml: the render exceeded the memory limit of 128 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			stop := heapWatch()
			_, err := Render(context.Background(), repo(tt.tree), "k", tt.opts)
			peak := stop()
			var re *RenderError
			if !errors.As(err, &re) || err.Error() != tt.want {
				t.Errorf("Render = %v\nwant a RenderError %q", err, tt.want)
			}
			if grew := int64(peak) - int64(before.HeapAlloc); grew > 64<<20 {
				t.Errorf("this process's heap grew by %d MiB during the render", grew>>20)
			}
		})
	}
}

// TestRenderCancelledFreesItsSlot cancels a render that would run for
// minutes and checks that it returns the context's error, not the commit's
// fault, and leaves the build slot free for the next render.
func TestRenderCancelledFreesItsSlot(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	afterWorkerStart = cancel
	defer func() { afterWorkerStart = nil }()
	_, err := Render(ctx, repo(bombs("many-patches", 1000)), "k", RenderOptions{RenderTimeout: time.Hour})
	afterWorkerStart = nil
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Render = %v, want context.Canceled", err)
	}
	var re *RenderError
	if errors.As(err, &re) {
		t.Errorf("a cancelled render is a RenderError: %v", err)
	}
	if n := len(buildSlot); n != 0 {
		t.Fatalf("%d render slots still taken after the cancelled render returned", n)
	}
	if objs := mustRender(t, repo(staging), "environments/staging"); len(objs) == 0 {
		t.Error("the next render rendered nothing")
	}
}

// TestRenderStripsSluiceMetadata checks that a commit cannot set the labels
// and annotations Sluice owns (a keep-until on its test namespace, another
// gate's label), while the ones it sets on purpose stay.
func TestRenderStripsSluiceMetadata(t *testing.T) {
	tree := repo(map[string]string{
		"k/kustomization.yaml": "resources:\n- objs.yaml\n",
		"k/objs.yaml": `apiVersion: v1
kind: Namespace
metadata:
  name: staging
  labels: {sluice.dev/gate: other, team: a}
  annotations: {sluice.dev/keep-until: "2999-01-01T00:00:00Z", sluice.dev/created-at: "2999-01-01T00:00:00Z", note: kept}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {sluice.dev/commit: "0000000000000000000000000000000000000000", app: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web, sluice.dev/gate: other}
      annotations: {sluice.dev/simulate: never-ready, sluice.dev/future: x}
    spec:
      containers: [{name: web, image: web}]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: check
  labels: {sluice.dev/test: "true"}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: c}]
`,
	})
	objs := mustRender(t, tree, "k")
	got := map[string]any{}
	for _, o := range objs {
		tmpl, _, _ := unstructured.NestedMap(o.Object, "spec", "template", "metadata")
		got[o.GetKind()] = map[string]any{"labels": o.GetLabels(), "annotations": o.GetAnnotations(), "template": tmpl}
	}
	want := map[string]any{
		"Namespace": map[string]any{"labels": map[string]string{"team": "a"}, "annotations": map[string]string{"note": "kept"}, "template": map[string]any(nil)},
		"Deployment": map[string]any{"labels": map[string]string{"app": "web"}, "annotations": map[string]string(nil), "template": map[string]any{
			"labels": map[string]any{"app": "web"}, "annotations": map[string]any{"sluice.dev/simulate": "never-ready"},
		}},
		"Job": map[string]any{"labels": map[string]string{"sluice.dev/test": "true"}, "annotations": map[string]string(nil), "template": map[string]any(nil)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metadata (-want +got):\n%s", diff)
	}
}

// unreadableFS is a tree whose files cannot be read, as a blob over the tree
// reader's limit.
type unreadableFS struct{ fstest.MapFS }

var errBlobTooLarge = errors.New("blob is larger than the limit")

func (u unreadableFS) Open(name string) (fs.File, error) {
	if strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, "kustomization.yaml") {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errBlobTooLarge}
	}
	return u.MapFS.Open(name)
}

// TestRenderUnreadableTreeIsTheCommitsFault checks that a file of the
// commit's tree that cannot be read fails the commit, naming the file,
// rather than being retried forever as an outage.
func TestRenderUnreadableTreeIsTheCommitsFault(t *testing.T) {
	_, err := Render(context.Background(), unreadableFS{repo(staging)}, "environments/staging", RenderOptions{})
	var re *RenderError
	if !errors.As(err, &re) || !errors.Is(err, errBlobTooLarge) || re.Path != "environments/staging/namespace.yaml" {
		t.Errorf("Render = %v, want a RenderError for environments/staging/namespace.yaml", err)
	}
}
