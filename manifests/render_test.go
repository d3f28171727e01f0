package manifests

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// staging is a small desired-state repository: an app base, a component,
// and a staging overlay that uses images, replacements, a patch and a
// ConfigMap generator.
var staging = map[string]string{
	"bases/app/kustomization.yaml": `
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- deployment.yaml
- service.yaml
`,
	"bases/app/deployment.yaml": `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: ghcr.io/acme/web:1.0.0
        env:
        - name: SERVICE_NAME
          value: placeholder
        envFrom:
        - configMapRef:
            name: web-config
`,
	"bases/app/service.yaml": `
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
`,
	"components/debug/kustomization.yaml": `
apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
patches:
- target: {kind: Deployment, name: web}
  patch: |-
    - op: add
      path: /spec/template/metadata/annotations
      value: {debug: "true"}
`,
	"environments/staging/kustomization.yaml": `
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: staging
resources:
- namespace.yaml
- ../../bases/app
components:
- ../../components/debug
images:
- name: ghcr.io/acme/web
  newTag: "1.2.3"
patches:
- path: replicas.yaml
generatorOptions:
  disableNameSuffixHash: true
configMapGenerator:
- name: web-config
  literals:
  - LOG_LEVEL=debug
  files:
  - config/app.properties
replacements:
- source:
    kind: Service
    name: web
    fieldPath: metadata.name
  targets:
  - select: {kind: Deployment, name: web}
    fieldPaths:
    - spec.template.spec.containers.[name=web].env.[name=SERVICE_NAME].value
- path: replacements.yaml
`,
	"environments/staging/namespace.yaml": `
apiVersion: v1
kind: Namespace
metadata:
  name: staging
`,
	"environments/staging/replicas.yaml": `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
`,
	"environments/staging/replacements.yaml": `
- source:
    kind: Deployment
    name: web
    fieldPath: spec.template.spec.containers.[name=web].image
  targets:
  - select: {kind: Service, name: web}
    fieldPaths:
    - metadata.annotations.image
    options: {create: true}
`,
	"environments/staging/config/app.properties": "greeting=hello\n",
	"README.md": "# not read\n",
}

// with returns staging with some files added, changed or (when "") removed.
func with(changes map[string]string) map[string]string {
	files := make(map[string]string, len(staging)+len(changes))
	for k, v := range staging {
		files[k] = v
	}
	for k, v := range changes {
		if v == "" {
			delete(files, k)
			continue
		}
		files[k] = v
	}
	return files
}

func TestRenderStaging(t *testing.T) {
	want := objects(t, `
apiVersion: v1
kind: Namespace
metadata:
  name: staging
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: staging
data:
  LOG_LEVEL: debug
  app.properties: |
    greeting=hello
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: staging
  annotations:
    image: ghcr.io/acme/web:1.2.3
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: staging
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
      annotations: {debug: "true"}
    spec:
      containers:
      - name: web
        image: ghcr.io/acme/web:1.2.3
        env:
        - name: SERVICE_NAME
          value: web
        envFrom:
        - configMapRef:
            name: web-config
`)
	got := mustRender(t, repo(staging), "environments/staging")
	if diff := cmp.Diff(maps(want), maps(got)); diff != "" {
		t.Errorf("Render (-want +got):\n%s", diff)
	}
}

// TestRenderPaths checks the spellings of the gate's path that mean the
// same directory, and the ones that are the configuration's fault.
func TestRenderPaths(t *testing.T) {
	tree := repo(staging)
	want := mustRender(t, tree, "environments/staging")
	for _, dir := range []string{"./environments/staging", "environments/staging/", "environments//staging"} {
		t.Run(dir, func(t *testing.T) {
			got := mustRender(t, tree, dir)
			if diff := cmp.Diff(maps(want), maps(got)); diff != "" {
				t.Errorf("Render(%q) (-want +got):\n%s", dir, diff)
			}
		})
	}
	for _, dir := range []string{"/environments/staging", "../environments/staging"} {
		t.Run(dir, func(t *testing.T) {
			_, err := Render(context.Background(), tree, dir, RenderOptions{})
			if err == nil {
				t.Fatal("Render succeeded, want an error")
			}
			var re *RenderError
			if errors.As(err, &re) {
				t.Errorf("Render(%q) = %v, a RenderError; a bad gate path is the configuration's fault", dir, err)
			}
		})
	}
}

// TestRenderFollowsSymlinksInsideTheTree checks that a symlink which stays
// in the repository works, to a file and to a directory.
func TestRenderFollowsSymlinksInsideTheTree(t *testing.T) {
	files := with(map[string]string{
		"environments/staging/kustomization.yaml": `
namespace: staging
resources:
- app
- ns.yaml
`,
		"environments/staging/app":     "-> ../../bases/app",
		"environments/staging/ns.yaml": "-> namespace.yaml",
	})
	got := mustRender(t, repo(files), "environments/staging")
	var names []string
	for _, o := range got {
		names = append(names, o.GetKind()+"/"+o.GetName())
	}
	if diff := cmp.Diff([]string{"Namespace/staging", "Service/web", "Deployment/web"}, names); diff != "" {
		t.Errorf("rendered objects (-want +got):\n%s", diff)
	}
}

// TestRenderRejects holds the commit's faults Render must refuse, most of
// them hostile. Each error must be a *RenderError that names the file at
// fault and why.
func TestRenderRejects(t *testing.T) {
	const kfile = "environments/staging/kustomization.yaml"
	// kust replaces the staging kustomization with body.
	kust := func(body string, more ...string) map[string]string {
		changes := map[string]string{kfile: body}
		for i := 0; i+1 < len(more); i += 2 {
			changes[more[i]] = more[i+1]
		}
		return with(changes)
	}
	configMap := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n"

	tests := []struct {
		name  string
		files map[string]string
		dir   string
		opts  RenderOptions
		want  []string // substrings of the error
	}{
		{
			name:  "a resource that climbs out of the repository",
			files: kust("resources:\n- ../../../etc/passwd\n"),
			want:  []string{kfile + `: resource "../../../etc/passwd" climbs out of the repository`},
		},
		{
			name:  "a base that climbs out of the repository",
			files: kust("bases:\n- ../../../elsewhere\n"),
			want:  []string{kfile + `: base "../../../elsewhere" climbs out of the repository`},
		},
		{
			name:  "an absolute resource path",
			files: kust("resources:\n- /etc/passwd\n"),
			want:  []string{kfile + `: resource "/etc/passwd" is an absolute path`},
		},
		{
			name:  "a remote base over https",
			files: kust("resources:\n- https://github.com/acme/infra//base?ref=v1\n"),
			want:  []string{kfile + `: resource "https://github.com/acme/infra//base?ref=v1" is a remote reference`},
		},
		{
			name:  "a remote base in GitHub shorthand",
			files: kust("resources:\n- github.com/acme/infra/base\n"),
			want:  []string{kfile + `: resource "github.com/acme/infra/base" is a remote reference`},
		},
		{
			name:  "a remote base in scp form",
			files: kust("resources:\n- git@gitlab.example.com:acme/infra.git//base\n"),
			want:  []string{kfile + `: resource "git@gitlab.example.com:acme/infra.git//base" is a remote reference`},
		},
		{
			name:  "a remote base over ssh with the go-getter prefix",
			files: kust("resources:\n- git::SSH://git@example.com/acme/infra.git\n"),
			want:  []string{kfile + `: resource "git::SSH://git@example.com/acme/infra.git" is a remote reference`},
		},
		{
			name:  "a local git repository by file URL",
			files: kust("resources:\n- file:///srv/git/infra.git\n"),
			want:  []string{kfile + `: resource "file:///srv/git/infra.git" is a remote reference`},
		},
		{
			name:  "a remote component",
			files: kust("components:\n- https://example.com/acme/components.git//debug\n"),
			want:  []string{kfile + `: component "https://example.com/acme/components.git//debug" is a remote reference`},
		},
		{
			name:  "a patch fetched over http",
			files: kust("resources:\n- namespace.yaml\npatches:\n- path: http://example.com/patch.yaml\n"),
			want:  []string{kfile + `: patch "http://example.com/patch.yaml" is a remote reference`},
		},
		{
			name:  "a strategic merge patch fetched over https",
			files: kust("resources:\n- namespace.yaml\npatchesStrategicMerge:\n- https://example.com/patch.yaml\n"),
			want:  []string{kfile + `: patch "https://example.com/patch.yaml" is a remote reference`},
		},
		{
			name:  "a generator file outside the repository",
			files: kust("configMapGenerator:\n- name: x\n  files:\n  - key=../../../etc/hostname\n"),
			want:  []string{kfile + `: file "../../../etc/hostname" climbs out of the repository`},
		},
		{
			name:  "an env file fetched over https",
			files: kust("secretGenerator:\n- name: x\n  envs:\n  - https://example.com/.env\n"),
			want:  []string{kfile + `: env file "https://example.com/.env" is a remote reference`},
		},
		{
			name:  "an openapi schema fetched over https",
			files: kust("openapi:\n  path: https://example.com/schema.json\n"),
			want:  []string{kfile + `: openapi path "https://example.com/schema.json" is a remote reference`},
		},
		{
			name:  "a symlinked file that leaves the repository",
			files: kust("resources:\n- leak.yaml\n", "environments/staging/leak.yaml", "-> ../../../outside.yaml"),
			want:  []string{kfile + `: resource "leak.yaml" goes through symlink environments/staging/leak.yaml, which points outside the repository`},
		},
		{
			name:  "an absolute symlink",
			files: kust("resources:\n- leak.yaml\n", "environments/staging/leak.yaml", "-> /etc/passwd"),
			want:  []string{kfile + `: resource "leak.yaml" goes through symlink environments/staging/leak.yaml, which points outside the repository`},
		},
		{
			name:  "a symlinked directory that leaves the repository",
			files: kust("resources:\n- up/etc/passwd\n", "environments/staging/up", "-> ../../.."),
			want:  []string{kfile + `: resource "up/etc/passwd" goes through symlink environments/staging/up, which points outside the repository`},
		},
		{
			name:  "a symlink loop",
			files: kust("resources:\n- a.yaml\n", "environments/staging/a.yaml", "-> b.yaml", "environments/staging/b.yaml", "-> a.yaml"),
			want:  []string{kfile + `: resource "a.yaml" passes more than 40 symlinks`},
		},
		{
			name:  "a file over the size limit",
			files: kust("resources:\n- big.yaml\n", "environments/staging/big.yaml", fmt.Sprintf(configMap, "big")+"data:\n  x: "+strings.Repeat("a", 2048)+"\n"),
			opts:  RenderOptions{MaxFileSize: 1024},
			want:  []string{"environments/staging/big.yaml: is larger than the limit of 1024 bytes"},
		},
		{
			name:  "more bytes than the total limit",
			files: kust("resources:\n- a.yaml\n- b.yaml\n", "environments/staging/a.yaml", fmt.Sprintf(configMap, "a")+"data:\n  x: "+strings.Repeat("a", 600)+"\n", "environments/staging/b.yaml", fmt.Sprintf(configMap, "b")+"data:\n  x: "+strings.Repeat("b", 600)+"\n"),
			opts:  RenderOptions{MaxTotalSize: 1024},
			want:  []string{"environments/staging/b.yaml: the render needs more than the limit of 1024 bytes"},
		},
		{
			name:  "more files than the limit",
			files: kust("resources:\n- a.yaml\n- b.yaml\n", "environments/staging/a.yaml", fmt.Sprintf(configMap, "a"), "environments/staging/b.yaml", fmt.Sprintf(configMap, "b")),
			opts:  RenderOptions{MaxFiles: 2},
			want:  []string{"environments/staging/b.yaml: the render needs more than the limit of 2 files"},
		},
		{
			name:  "invalid UTF-8",
			files: kust("resources:\n- bad.yaml\n", "environments/staging/bad.yaml", fmt.Sprintf(configMap, "bad")+"data:\n  x: \"\xff\xfe\"\n"),
			want:  []string{"environments/staging/bad.yaml: is not valid UTF-8"},
		},
		{
			name:  "invalid UTF-8 in an env file",
			files: kust("configMapGenerator:\n- name: x\n  envs:\n  - bad.env\n", "environments/staging/bad.env", "A=\xff\n"),
			want:  []string{"environments/staging/bad.env: is not valid UTF-8"},
		},
		{
			name:  "a duplicate key",
			files: kust("resources:\n- dup.yaml\n", "environments/staging/dup.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dup\ndata:\n  a: one\n  a: two\n"),
			want:  []string{`environments/staging/dup.yaml: has the key "a" twice (lines 6 and 7)`},
		},
		{
			name:  "a duplicate key in the kustomization",
			files: kust("resources:\n- namespace.yaml\nresources:\n- ../../bases/app\n"),
			want:  []string{kfile + `: has the key "resources" twice (lines 1 and 3)`},
		},
		{
			name:  "an alias bomb",
			files: kust("resources:\n- bomb.yaml\n", "environments/staging/bomb.yaml", billionLaughs),
			want:  []string{"environments/staging/bomb.yaml: has aliases that expand to more than 100000 extra nodes"},
		},
		{
			name:  "an alias bomb in an inline patch",
			files: kust("resources:\n- namespace.yaml\npatches:\n- patch: |\n" + indent(billionLaughs, "    ")),
			want:  []string{kfile + ": inline patch has aliases that expand to more than 100000 extra nodes"},
		},
		{
			name:  "nesting deeper than the limit",
			files: kust("resources:\n- deep.yaml\n", "environments/staging/deep.yaml", fmt.Sprintf(configMap, "deep")+"spec: "+strings.Repeat("[", 20)+strings.Repeat("]", 20)+"\n"),
			opts:  RenderOptions{MaxDepth: 16},
			want:  []string{"environments/staging/deep.yaml: nests deeper than the limit of 16 levels"},
		},
		{
			name:  "nesting deeper than the limit through an alias",
			files: kust("resources:\n- deep.yaml\n", "environments/staging/deep.yaml", fmt.Sprintf(configMap, "deep")+"x: &x "+strings.Repeat("[", 10)+strings.Repeat("]", 10)+"\ny: "+strings.Repeat("[", 8)+"*x"+strings.Repeat("]", 8)+"\n"),
			opts:  RenderOptions{MaxDepth: 16},
			want:  []string{"environments/staging/deep.yaml: nests deeper than the limit of 16 levels through alias *x"},
		},
		{
			name:  "invalid YAML",
			files: kust("resources:\n- bad.yaml\n", "environments/staging/bad.yaml", "kind: [unclosed\n"),
			want:  []string{"environments/staging/bad.yaml: is not valid YAML"},
		},
		{
			name: "a kustomization cycle",
			files: kust("resources:\n- ../../bases/a\n",
				"bases/a/kustomization.yaml", "resources:\n- ../b\n",
				"bases/b/kustomization.yaml", "resources:\n- ../a\n"),
			want: []string{`bases/b/kustomization.yaml: resource "../a" makes a kustomization cycle: bases/a -> bases/b -> bases/a`},
		},
		{
			name:  "a kustomization that includes its own directory",
			files: kust("resources:\n- .\n"),
			want:  []string{kfile + `: resource "." makes a kustomization cycle: environments/staging -> environments/staging`},
		},
		{
			name:  "a kustomization that includes a directory above it",
			files: kust("resources:\n- ..\n", "environments/kustomization.yaml", "resources:\n- ../bases/app\n"),
			want:  []string{kfile + `: resource ".." makes a kustomization cycle: environments/staging -> environments`},
		},
		{
			name:  "a cycle through a symlink",
			files: kust("resources:\n- loop\n", "environments/staging/loop", "-> ."),
			want:  []string{kfile + `: resource "loop" makes a kustomization cycle: environments/staging -> environments/staging/loop`},
		},
		{
			name:  "more objects than the limit",
			files: staging,
			opts:  RenderOptions{MaxObjects: 3},
			want:  []string{kfile + ": renders 4 objects, more than the limit of 3"},
		},
		{
			name:  "a missing resource",
			files: kust("resources:\n- namespace.yaml\n- missing.yaml\n"),
			want:  []string{kfile + `: resource "missing.yaml" not found: environments/staging/missing.yaml does not exist`},
		},
		{
			name:  "a missing patch in a base",
			files: with(map[string]string{"bases/app/kustomization.yaml": "resources:\n- deployment.yaml\npatches:\n- path: gone.yaml\n"}),
			want:  []string{`bases/app/kustomization.yaml: patch "gone.yaml" not found: bases/app/gone.yaml does not exist`},
		},
		{
			name:  "a resource directory without a kustomization",
			files: kust("resources:\n- config\n"),
			want:  []string{kfile + `: resource "config" is a directory without a kustomization.yaml (environments/staging/config)`},
		},
		{
			name:  "a component that is a file",
			files: kust("resources:\n- namespace.yaml\ncomponents:\n- replicas.yaml\n"),
			want:  []string{kfile + `: component "replicas.yaml" is a file; a component is a directory`},
		},
		{
			name:  "a gate path that does not exist",
			files: staging,
			dir:   "environments/prod",
			want:  []string{"environments/prod: does not exist"},
		},
		{
			name:  "a gate path without a kustomization",
			files: staging,
			dir:   "environments/staging/config",
			want:  []string{"environments/staging/config: no kustomization.yaml in this directory"},
		},
		{
			name:  "two kustomization files",
			files: kust("resources:\n- namespace.yaml\n", "environments/staging/kustomization.yml", "resources:\n- namespace.yaml\n"),
			want:  []string{"environments/staging: holds more than one kustomization file"},
		},
		{
			name:  "Helm charts",
			files: kust("helmCharts:\n- name: podinfo\n  repo: https://stefanprodan.github.io/podinfo\n  version: 6.0.0\n"),
			want:  []string{kfile + ": uses helmCharts: Helm chart inflation is not supported"},
		},
		{
			name: "a Helm generator plugin",
			files: kust("generators:\n- helm.yaml\n", "environments/staging/helm.yaml",
				"apiVersion: builtin\nkind: HelmChartInflationGenerator\nmetadata:\n  name: podinfo\nname: podinfo\nrepo: https://stefanprodan.github.io/podinfo\n"),
			want: []string{"environments/staging/helm.yaml: generator HelmChartInflationGenerator/podinfo: Helm chart inflation is not supported"},
		},
		{
			name: "an exec plugin",
			files: kust("transformers:\n- sed.yaml\n", "environments/staging/sed.yaml",
				"apiVersion: someteam.example.com/v1\nkind: SedTransformer\nmetadata:\n  name: sed\nargsOneLiner: s/a/b/\n"),
			want: []string{`environments/staging/sed.yaml: transformer SedTransformer/sed (apiVersion "someteam.example.com/v1") is not a builtin plugin`},
		},
		{
			name:  "an inline exec plugin",
			files: kust("resources:\n- namespace.yaml\ntransformers:\n- |\n  apiVersion: someteam.example.com/v1\n  kind: SedTransformer\n  metadata:\n    name: sed\n"),
			want:  []string{kfile + `: transformer SedTransformer/sed (apiVersion "someteam.example.com/v1") is not a builtin plugin`},
		},
		{
			name: "a KRM function",
			files: kust("generators:\n- fn.yaml\n", "environments/staging/fn.yaml",
				"apiVersion: example.com/v1\nkind: Render\nmetadata:\n  name: fn\n  annotations:\n    config.kubernetes.io/function: |\n      exec:\n        path: /bin/sh\n"),
			want: []string{"environments/staging/fn.yaml: generator Render/fn is a KRM function"},
		},
		{
			name: "a builtin transformer that fetches its patch",
			files: kust("resources:\n- namespace.yaml\ntransformers:\n- patch.yaml\n", "environments/staging/patch.yaml",
				"apiVersion: builtin\nkind: PatchTransformer\nmetadata:\n  name: p\npath: https://example.com/patch.yaml\n"),
			want: []string{kfile + `: transformer PatchTransformer/p path "https://example.com/patch.yaml" is a remote reference`},
		},
		{
			name: "a builtin generator that reads outside the repository",
			files: kust("generators:\n- cm.yaml\n", "environments/staging/cm.yaml",
				"apiVersion: builtin\nkind: ConfigMapGenerator\nmetadata:\n  name: cm\nFILES:\n- ../../../etc/shadow\n"),
			want: []string{kfile + `: generator ConfigMapGenerator/cm file "../../../etc/shadow" climbs out of the repository`},
		},
		{
			name:  "a generator directory",
			files: kust("generators:\n- ../../bases/app\n"),
			want:  []string{kfile + `: generator "../../bases/app" is a directory`},
		},
		{
			name:  "an invalid kustomization",
			files: kust("resources: 42\n"),
			want:  []string{kfile + ": invalid kustomization"},
		},
		{
			name:  "an error only kustomize finds",
			files: kust("resources:\n- namespace.yaml\npatches:\n- path: replicas.yaml\n"),
			want:  []string{kfile + ": kustomize build: ", "no resource matches"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := tt.dir
			if dir == "" {
				dir = "environments/staging"
			}
			objs, err := Render(context.Background(), repo(tt.files), dir, tt.opts)
			if err == nil {
				t.Fatalf("Render succeeded with %d objects, want an error", len(objs))
			}
			var re *RenderError
			if !errors.As(err, &re) {
				t.Fatalf("Render error %v (%T) is not a *RenderError", err, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Render error\n  %v\ndoes not contain\n  %s", err, w)
				}
			}
		})
	}
}

// billionLaughs is a small YAML document whose aliases expand to 10^9 nodes.
const billionLaughs = `apiVersion: v1
kind: ConfigMap
metadata:
  name: lol
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h,*h]
`

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestRenderHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Render(ctx, repo(staging), "environments/staging", RenderOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Render with a cancelled context = %v, want context.Canceled", err)
	}
	var re *RenderError
	if errors.As(err, &re) {
		t.Errorf("a cancelled render is a RenderError; it is not the commit's fault")
	}
}

// TestRenderIsolatesOpenAPISchemas renders a kustomization with its own
// OpenAPI schema, which kustomize keeps in a global, and checks that the next
// render of another kustomization is not changed by it: the schema gives a
// custom kind's list a merge key, so a patch would merge into the list
// instead of replacing it.
func TestRenderIsolatesOpenAPISchemas(t *testing.T) {
	widget := "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\nspec:\n  parts:\n  - {name: a, size: 1}\n"
	patch := "patches:\n- patch: |-\n    apiVersion: example.com/v1\n    kind: Widget\n    metadata:\n      name: w\n    spec:\n      parts:\n      - {name: b, size: 2}\n"
	tree := repo(map[string]string{
		"polluter/kustomization.yaml": "openapi:\n  path: schema.json\nresources:\n- widget.yaml\n" + patch,
		"polluter/widget.yaml":        widget,
		"polluter/schema.json": `{"definitions": {"com.example.v1.Widget": {
  "type": "object",
  "x-kubernetes-group-version-kind": [{"group": "example.com", "kind": "Widget", "version": "v1"}],
  "properties": {"spec": {"type": "object", "properties": {"parts": {
    "type": "array", "items": {"type": "object"},
    "x-kubernetes-patch-merge-key": "name", "x-kubernetes-patch-strategy": "merge"}}}}}}}`,
		"victim/kustomization.yaml": "resources:\n- widget.yaml\n" + patch,
		"victim/widget.yaml":        widget,
	})
	want := mustRender(t, tree, "victim")
	polluted := mustRender(t, tree, "polluter")
	if diff := cmp.Diff(maps(want), maps(polluted)); diff == "" {
		t.Fatal("the custom schema changed nothing; the test cannot tell pollution")
	}
	got := mustRender(t, tree, "victim")
	if diff := cmp.Diff(maps(want), maps(got)); diff != "" {
		t.Errorf("victim after polluter (-before +after):\n%s", diff)
	}
}

// TestRenderRunsBuiltinPlugins checks that the builtin generators and
// transformers still work, in files and inline, with the files they name.
func TestRenderRunsBuiltinPlugins(t *testing.T) {
	files := with(map[string]string{
		"environments/staging/kustomization.yaml": `
namespace: staging
resources:
- ../../bases/app
patchesStrategicMerge:
- |-
  apiVersion: v1
  kind: Service
  metadata:
    name: web
  spec:
    type: ClusterIP
- replicas.yaml
generators:
- generator.yaml
transformers:
- prefix.yaml
- |-
  apiVersion: builtin
  kind: LabelTransformer
  metadata:
    name: team
  labels:
    team: web
  fieldSpecs:
  - path: metadata/labels
    create: true
`,
		"environments/staging/generator.yaml": `
apiVersion: builtin
kind: ConfigMapGenerator
metadata:
  name: web-config
options:
  disableNameSuffixHash: true
files:
- config/app.properties
`,
		"environments/staging/prefix.yaml": `
apiVersion: builtin
kind: PrefixTransformer
metadata:
  name: prefix
prefix: staging-
fieldSpecs:
- path: metadata/name
`,
	})
	var got []string
	for _, o := range mustRender(t, repo(files), "environments/staging") {
		replicas, _, _ := unstructured.NestedInt64(o.Object, "spec", "replicas")
		svcType, _, _ := unstructured.NestedString(o.Object, "spec", "type")
		got = append(got, fmt.Sprintf("%s/%s team=%s replicas=%d type=%s", o.GetKind(), o.GetName(), o.GetLabels()["team"], replicas, svcType))
	}
	want := []string{
		"ConfigMap/staging-web-config team=web replicas=0 type=",
		"Service/staging-web team=web replicas=0 type=ClusterIP",
		"Deployment/staging-web team=web replicas=2 type=",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rendered objects (-want +got):\n%s", diff)
	}
}
