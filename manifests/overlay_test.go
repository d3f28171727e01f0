package manifests

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

const sha = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"

var created = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// rendered is what a staging environment might render to.
const rendered = `
apiVersion: v1
kind: Namespace
metadata:
  name: staging
  labels:
    kubernetes.io/metadata.name: staging
    pod-security.kubernetes.io/enforce: restricted
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets}
  scope: Cluster
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: web-reader
rules: []
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: web
  namespace: staging
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: web}
subjects:
- {kind: ServiceAccount, name: web, namespace: staging}
- {kind: ServiceAccount, name: prometheus, namespace: monitoring}
- {kind: Group, name: devs, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: staging
  labels: {app: web}
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - {name: web, image: "ghcr.io/acme/web:1.2.3"}
---
apiVersion: example.com/v1
kind: Widget
metadata:
  name: big
  namespace: staging # set by kustomize, which does not know Widget's scope
---
apiVersion: example.com/v1
kind: Gadget
metadata:
  name: small
  namespace: staging
---
apiVersion: batch/v1
kind: Job
metadata:
  name: smoke
  namespace: staging
  labels: {sluice.dev/test: "true"}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: smoke, image: curlimages/curl, args: ["http://web"]}
`

// sluiceLabels are the labels of every object in the tests below.
const sluiceLabels = `app.kubernetes.io/managed-by: sluice
    sluice.dev/gate: staging
    sluice.dev/commit: ` + sha + `
    team: web`

func TestOverlay(t *testing.T) {
	ns := "sluice-staging-1a2b3c4"
	base := OverlayOptions{
		Namespace: ns,
		Gate:      "staging",
		Commit:    sha,
		Labels:    map[string]string{"team": "web"},
		Now:       func() time.Time { return created },
	}
	namespace := one(t, `
apiVersion: v1
kind: Namespace
metadata:
  name: `+ns+`
  labels:
    pod-security.kubernetes.io/enforce: restricted
    `+sluiceLabels+`
  annotations:
    sluice.dev/created-at: "2025-03-01T12:00:00Z"
`)
	roleBinding := one(t, `
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: web
  namespace: `+ns+`
  labels:
    `+sluiceLabels+`
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: web}
subjects:
- {kind: ServiceAccount, name: web, namespace: `+ns+`}
- {kind: ServiceAccount, name: prometheus, namespace: monitoring}
- {kind: Group, name: devs, apiGroup: rbac.authorization.k8s.io}
`)
	deployment := one(t, `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: `+ns+`
  labels:
    app: web
    `+sluiceLabels+`
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels:
        app: web
        `+strings.ReplaceAll(sluiceLabels, "\n    ", "\n        ")+`
    spec:
      containers:
      - {name: web, image: "ghcr.io/acme/web:1.2.3"}
`)
	gadget := one(t, `
apiVersion: example.com/v1
kind: Gadget
metadata:
  name: small
  namespace: `+ns+`
  labels:
    `+sluiceLabels+`
`)
	smoke := one(t, `
apiVersion: batch/v1
kind: Job
metadata:
  name: smoke
  namespace: `+ns+`
  labels:
    sluice.dev/test: "true"
    `+sluiceLabels+`
spec:
  template:
    metadata:
      labels:
        `+strings.ReplaceAll(sluiceLabels, "\n    ", "\n        ")+`
    spec:
      restartPolicy: Never
      containers:
      - {name: smoke, image: curlimages/curl, args: ["http://web"]}
`)
	crd := one(t, `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
  labels:
    `+sluiceLabels+`
spec:
  group: example.com
  names: {kind: Widget, plural: widgets}
  scope: Cluster
`)
	clusterRole := one(t, `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: web-reader
  labels:
    `+sluiceLabels+`
rules: []
`)
	widget := one(t, `
apiVersion: example.com/v1
kind: Widget
metadata:
  name: big
  labels:
    `+sluiceLabels+`
`)

	tests := []struct {
		name string
		opts func(o *OverlayOptions)
		want *TestEnvironment
	}{
		{
			name: "cluster-scoped objects are kept for a dry-run by default",
			want: &TestEnvironment{
				Namespace:     namespace,
				Objects:       []*unstructured.Unstructured{roleBinding, deployment, gadget},
				ClusterScoped: []*unstructured.Unstructured{crd, clusterRole, widget},
				Tests:         []*unstructured.Unstructured{smoke},
				Dropped:       []string{"Namespace/staging"},
			},
		},
		{
			name: "cluster-scoped objects are dropped when ignored",
			opts: func(o *OverlayOptions) { o.ClusterScoped = ClusterScopedIgnore },
			want: &TestEnvironment{
				Namespace: namespace,
				Objects:   []*unstructured.Unstructured{roleBinding, deployment, gadget},
				Tests:     []*unstructured.Unstructured{smoke},
				Dropped:   []string{"Namespace/staging", "CustomResourceDefinition/widgets.example.com", "ClusterRole/web-reader", "Widget/big"},
			},
		},
		{
			name: "the cluster's RESTMapper decides kinds it knows",
			opts: func(o *OverlayOptions) {
				o.ClusterScoped = ClusterScopedIgnore
				o.IsNamespaced = func(gvk schema.GroupVersionKind) (bool, error) {
					switch gvk.Kind {
					case "Gadget":
						return false, nil // cluster-scoped in this cluster
					}
					if gvk.Group == "example.com" {
						return false, &meta.NoKindMatchError{GroupKind: gvk.GroupKind()}
					}
					return gvk.Kind != "ClusterRole" && gvk.Kind != "CustomResourceDefinition", nil
				}
			},
			want: &TestEnvironment{
				Namespace: namespace,
				Objects:   []*unstructured.Unstructured{roleBinding, deployment},
				Tests:     []*unstructured.Unstructured{smoke},
				Dropped:   []string{"Namespace/staging", "CustomResourceDefinition/widgets.example.com", "ClusterRole/web-reader", "Widget/big", "Gadget/small"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := objects(t, rendered)
			before := maps(objects(t, rendered))
			opts := base
			if tt.opts != nil {
				tt.opts(&opts)
			}
			got, err := Overlay(in, opts)
			if err != nil {
				t.Fatalf("Overlay: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Overlay (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, maps(in)); diff != "" {
				t.Errorf("Overlay changed its input (-before +after):\n%s", diff)
			}
		})
	}
}

func TestOverlayRewritesReferencesToTheOriginalNamespaces(t *testing.T) {
	in := objects(t, `
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: policy}
webhooks:
- name: policy.example.com
  clientConfig:
    service: {name: policy, namespace: staging, path: /validate}
- name: other.example.com
  clientConfig:
    service: {name: other, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: policy}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: policy}
subjects:
- {kind: ServiceAccount, name: policy, namespace: staging-jobs}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: policy, namespace: staging-jobs}
---
apiVersion: v1
kind: Service
metadata: {name: policy, namespace: staging}
`)
	env, err := Overlay(in, OverlayOptions{Namespace: "sluice-x", Gate: "staging", Commit: sha, Now: func() time.Time { return created }})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range env.ClusterScoped {
		switch o.GetKind() {
		case "ValidatingWebhookConfiguration":
			hooks, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
			for _, h := range hooks {
				ns, _, _ := unstructured.NestedString(h.(map[string]any), "clientConfig", "service", "namespace")
				got = append(got, "webhook "+ns)
			}
		case "ClusterRoleBinding":
			subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
			for _, s := range subjects {
				got = append(got, "subject "+s.(map[string]any)["namespace"].(string))
			}
		}
	}
	want := []string{"webhook sluice-x", "webhook kube-system", "subject sluice-x"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("namespace references (-want +got):\n%s", diff)
	}
}

func TestOverlayRejects(t *testing.T) {
	ok := OverlayOptions{Namespace: "sluice-staging-1a2b3c4", Gate: "staging", Commit: sha}
	tests := []struct {
		name       string
		objs       string
		opts       func(o *OverlayOptions)
		want       string
		commitsOwn bool // a *RenderError: the commit's fault
	}{
		{
			name: "objects from two namespaces with the same name",
			objs: `
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: staging}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: staging-jobs}
`,
			want:       "ConfigMap/staging-jobs/settings: collides with ConfigMap/staging/settings in the test namespace",
			commitsOwn: true,
		},
		{
			name: "a cluster-scoped test",
			objs: `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: check
  labels: {sluice.dev/test: "true"}
`,
			want:       "ClusterRole/check: is labelled sluice.dev/test=true but is cluster-scoped",
			commitsOwn: true,
		},
		{
			name:       "an object without a name",
			objs:       "apiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: staging}\n",
			want:       "has no kind or no name",
			commitsOwn: true,
		},
		{
			name: "a test namespace that is no DNS label",
			opts: func(o *OverlayOptions) { o.Namespace = "Sluice_Staging" },
			want: `test namespace "Sluice_Staging"`,
		},
		{
			name: "a gate that is no label value",
			opts: func(o *OverlayOptions) { o.Gate = "staging/eu" },
			want: `gate "staging/eu" is not a label value`,
		},
		{
			name: "an unknown cluster-scoped policy",
			opts: func(o *OverlayOptions) { o.ClusterScoped = "apply" },
			want: `unknown cluster-scoped policy "apply"`,
		},
		{
			name: "a RESTMapper that fails",
			objs: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: staging}\n",
			opts: func(o *OverlayOptions) {
				o.IsNamespaced = func(schema.GroupVersionKind) (bool, error) { return false, errors.New("connection refused") }
			},
			want: "find the scope of ConfigMap: connection refused",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := ok
			if tt.opts != nil {
				tt.opts(&opts)
			}
			_, err := Overlay(objects(t, tt.objs), opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Overlay error = %v, want one containing %q", err, tt.want)
			}
			var re *RenderError
			if got := errors.As(err, &re); got != tt.commitsOwn {
				t.Errorf("Overlay error is a RenderError: %v, want %v", got, tt.commitsOwn)
			}
		})
	}
}

func TestTestNamespace(t *testing.T) {
	tests := []struct {
		gate, commit, want string
	}{
		{"staging", sha, "sluice-staging-1a2b3c4"},
		{"Prod_EU/West", "ABCDEF0123", "sluice-prod-eu-west-abcdef0"},
		{"--edge--", sha, "sluice-edge-1a2b3c4"},
		{strings.Repeat("long-", 20), sha, "sluice-" + strings.Repeat("long-", 9) + "lon-1a2b3c4"},
		{"staging", "", "sluice-staging"},
		{"", sha, "sluice-1a2b3c4"},
		{"ünïcode", sha, "sluice-n-code-1a2b3c4"},
	}
	for _, tt := range tests {
		got := TestNamespace(tt.gate, tt.commit)
		if got != tt.want {
			t.Errorf("TestNamespace(%q, %q) = %q, want %q", tt.gate, tt.commit, got, tt.want)
		}
		if len(got) > 63 {
			t.Errorf("TestNamespace(%q, %q) is %d characters long", tt.gate, tt.commit, len(got))
		}
	}
}

// one decodes a single object.
func one(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	objs := objects(t, doc)
	if len(objs) != 1 {
		t.Fatalf("want one object, got %d", len(objs))
	}
	return objs[0]
}

// A rendered CRD is asked about a kind only when the cluster does not serve
// it; one that contradicts the scope the cluster (or, without a cluster,
// Kubernetes) gives a kind is refused, naming the CRD and its field.
// Otherwise a commit declaring ClusterRoleBinding "Namespaced" would have
// it applied into the test namespace, which the API server ignores for a
// cluster-scoped kind: created cluster-wide.
func TestOverlayScopeComesFromTheClusterNotFromRenderedCRDs(t *testing.T) {
	crd := func(group, kind, scope string) string {
		return `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: ` + strings.ToLower(kind) + `s.` + group + `}
spec:
  group: ` + group + `
  scope: ` + scope + `
  names: {kind: ` + kind + `, plural: ` + strings.ToLower(kind) + `s}
---
apiVersion: ` + group + `/v1
kind: ` + kind + `
metadata: {name: ` + strings.ToLower(kind) + `-1}
`
	}
	served := func(gvk schema.GroupVersionKind) (bool, error) {
		switch gvk.GroupKind() {
		case schema.GroupKind{Group: "rbac.authorization.k8s.io", Kind: "ClusterRoleBinding"},
			schema.GroupKind{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole"},
			schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"},
			schema.GroupKind{Group: "example.com", Kind: "Gadget"}:
			return false, nil
		}
		return false, &meta.NoKindMatchError{GroupKind: gvk.GroupKind()}
	}
	tests := []struct {
		name          string
		in            string
		isNamespaced  func(schema.GroupVersionKind) (bool, error)
		wantErr       string
		wantNamespace []string // objects moved into the test namespace
	}{
		{
			name:         "a served built-in kind declared Namespaced",
			in:           crd("rbac.authorization.k8s.io", "ClusterRoleBinding", "Namespaced"),
			isNamespaced: served,
			wantErr:      "CustomResourceDefinition/clusterrolebindings.rbac.authorization.k8s.io: field spec.scope declares ClusterRoleBinding.rbac.authorization.k8s.io Namespaced, but the cluster serves it Cluster",
		},
		{
			name:         "another served built-in kind declared Namespaced",
			in:           crd("rbac.authorization.k8s.io", "ClusterRole", "Namespaced"),
			isNamespaced: served,
			wantErr:      "but the cluster serves it Cluster",
		},
		{
			name:    "a built-in kind declared Namespaced, without a cluster",
			in:      crd("rbac.authorization.k8s.io", "ClusterRoleBinding", "Namespaced"),
			wantErr: "but Kubernetes defines it Cluster",
		},
		{
			name:         "a served custom kind declared with another scope",
			in:           crd("example.com", "Gadget", "Namespaced"),
			isNamespaced: served,
			wantErr:      "declares Gadget.example.com Namespaced, but the cluster serves it Cluster",
		},
		{
			name:          "a kind the cluster does not serve takes its rendered CRD's scope",
			in:            crd("example.com", "Widget", "Namespaced"),
			isNamespaced:  served,
			wantNamespace: []string{"Widget/widget-1"},
		},
		{
			name:         "a cluster-scoped kind the cluster does not serve yet stays out of the namespace",
			in:           crd("example.com", "Widget", "Cluster"),
			isNamespaced: served,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := Overlay(objects(t, tt.in), OverlayOptions{Namespace: "sluice-staging-1a2b3c4", Gate: "staging", Commit: sha, IsNamespaced: tt.isNamespaced})
			if tt.wantErr != "" {
				var re *RenderError
				if !errors.As(err, &re) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Overlay = %v, want a RenderError containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range env.Objects {
				got = append(got, o.GetKind()+"/"+o.GetName())
			}
			if diff := cmp.Diff(tt.wantNamespace, got); diff != "" {
				t.Errorf("objects applied into the namespace (-want +got):\n%s", diff)
			}
		})
	}
}

// The test namespace keeps a commit's Namespace labels and annotations,
// except Sluice's own: a commit cannot keep its namespace forever.
func TestOverlayNamespaceDropsSluiceKeysOfTheCommit(t *testing.T) {
	in := objects(t, `
apiVersion: v1
kind: Namespace
metadata:
  name: staging
  labels: {sluice.dev/gate: other, sluice.dev/test: "true", team: web}
  annotations: {sluice.dev/keep-until: "2999-01-01T00:00:00Z", sluice.dev/created-at: "2999-01-01T00:00:00Z", owner: web}
`)
	env, err := Overlay(in, OverlayOptions{Namespace: "sluice-staging-1a2b3c4", Gate: "staging", Commit: sha, Now: func() time.Time { return created }})
	if err != nil {
		t.Fatal(err)
	}
	wantAnn := map[string]string{"owner": "web", AnnotationCreatedAt: "2025-03-01T12:00:00Z"}
	if diff := cmp.Diff(wantAnn, env.Namespace.GetAnnotations()); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
	wantLabels := map[string]string{"team": "web", LabelGate: "staging", LabelCommit: sha, LabelManagedBy: ManagedByValue}
	if diff := cmp.Diff(wantLabels, env.Namespace.GetLabels()); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
}

// With CommitOnNamespaceOnly the commit labels the namespace and the tests
// (their pod templates too), never the other objects or their templates.
func TestOverlayCommitOnNamespaceOnly(t *testing.T) {
	in := objects(t, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: web:v1}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: check, labels: {sluice.dev/test: "true"}}
spec:
  template:
    spec: {restartPolicy: Never, containers: [{name: c, image: check:v1}]}
`)
	env, err := Overlay(in, OverlayOptions{Namespace: "sluice-staging-1a2b3c4", Gate: "staging", Commit: sha, CommitOnNamespaceOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	commitOf := func(o *unstructured.Unstructured, path ...string) string {
		l, _, _ := unstructured.NestedStringMap(o.Object, append(path, "metadata", "labels")...)
		return l[LabelCommit]
	}
	if len(env.Objects) != 1 || len(env.Tests) != 1 {
		t.Fatalf("objects %d, tests %d", len(env.Objects), len(env.Tests))
	}
	web, check := env.Objects[0], env.Tests[0]
	for what, got := range map[string]string{
		"the Deployment":                commitOf(web),
		"the Deployment's pod template": commitOf(web, "spec", "template"),
	} {
		if got != "" {
			t.Errorf("%s carries the commit %q", what, got)
		}
	}
	for what, got := range map[string]string{
		"the namespace":           env.Namespace.GetLabels()[LabelCommit],
		"the test Job":            commitOf(check),
		"the test's pod template": commitOf(check, "spec", "template"),
	} {
		if got != sha {
			t.Errorf("%s: commit %q, want %s", what, got, sha)
		}
	}
	if web.GetLabels()[LabelGate] != "staging" || web.GetLabels()[LabelManagedBy] != ManagedByValue {
		t.Errorf("the Deployment lost Sluice's other labels: %v", web.GetLabels())
	}
}
