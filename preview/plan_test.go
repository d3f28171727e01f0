package preview

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func objs(t *testing.T, docs ...string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, d := range docs {
		o := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(d), &o.Object); err != nil {
			t.Fatal(err)
		}
		out = append(out, o)
	}
	return out
}

func deployment(name, tag, extra string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s, namespace: staging}
spec:
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      containers: [{name: app, image: "r/%[1]s:%[2]s"%[3]s}]
`, name, tag, extra)
}

func svc(name string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: %[1]s, namespace: staging}\nspec: {selector: {app: %[1]s}, ports: [{port: 80}]}\n", name)
}

func cm(name, v string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: staging}\ndata: {v: %q}\n", name, v)
}

func names(os []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range os {
		s := o.GetKind() + "/" + o.GetName()
		if o.GetKind() == "Service" {
			if ty, _, _ := unstructured.NestedString(o.Object, "spec", "type"); ty == "ExternalName" {
				s += "->" + o.Object["spec"].(map[string]any)["externalName"].(string)
			}
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func TestPlanWritesOnlyWhatChangedAndStandInsForTheRest(t *testing.T) {
	envFrom := `, envFrom: [{configMapRef: {name: cfg}}]`
	base := func(t *testing.T, bTag, cfgV string) []*unstructured.Unstructured {
		return objs(t, deployment("a", "v1", envFrom), svc("a"), deployment("b", bTag, ""), svc("b"), cm("cfg", cfgV), svc("c"))
	}
	tests := []struct {
		name         string
		target, mine func(t *testing.T) []*unstructured.Unstructured
		routing      string
		wantChanged  []string
		wantObjects  []string
		wantRoutes   []string
	}{
		{
			name:        "one changed Deployment runs with its Service; the others are stand-ins",
			target:      func(t *testing.T) []*unstructured.Unstructured { return base(t, "v1", "1") },
			mine:        func(t *testing.T) []*unstructured.Unstructured { return base(t, "v2", "1") },
			wantChanged: []string{"Deployment/b"},
			wantObjects: []string{"Deployment/b", "Service/a->a.staging.svc.cluster.local", "Service/b", "Service/c->c.staging.svc.cluster.local"},
		},
		{
			name:        "a changed ConfigMap brings the Deployment that reads it",
			target:      func(t *testing.T) []*unstructured.Unstructured { return base(t, "v1", "1") },
			mine:        func(t *testing.T) []*unstructured.Unstructured { return base(t, "v1", "2") },
			wantChanged: []string{"Deployment/a"},
			wantObjects: []string{"ConfigMap/cfg", "Deployment/a", "Service/a", "Service/b->b.staging.svc.cluster.local", "Service/c->c.staging.svc.cluster.local"},
		},
		{
			name:        "nothing changed: only stand-ins",
			target:      func(t *testing.T) []*unstructured.Unstructured { return base(t, "v1", "1") },
			mine:        func(t *testing.T) []*unstructured.Unstructured { return base(t, "v1", "1") },
			wantObjects: []string{"Service/a->a.staging.svc.cluster.local", "Service/b->b.staging.svc.cluster.local", "Service/c->c.staging.svc.cluster.local"},
		},
		{
			name:        "gateway-api routes the changed Service by header, with a grant",
			target:      func(t *testing.T) []*unstructured.Unstructured { return base(t, "v1", "1") },
			mine:        func(t *testing.T) []*unstructured.Unstructured { return base(t, "v2", "1") },
			routing:     RoutingGatewayAPI,
			wantChanged: []string{"Deployment/b"},
			wantObjects: []string{"Deployment/b", "ReferenceGrant/sluice-preview-p", "Service/a->a.staging.svc.cluster.local", "Service/b", "Service/c->c.staging.svc.cluster.local"},
			wantRoutes:  []string{"HTTPRoute/sluice-preview-p-b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := Plan(Spec{Name: "p", Gate: "staging", Target: tt.target(t), Preview: tt.mine(t), Routing: tt.routing})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantChanged, set.Changed); diff != "" {
				t.Errorf("changed (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantObjects, names(set.Objects)); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantRoutes, names(set.Routes)); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
			for _, o := range append(set.Objects, set.Routes...) {
				if o.GetLabels()[LabelPreview] != "p" {
					t.Errorf("%s/%s is not labelled as the preview's: %v", o.GetKind(), o.GetName(), o.GetLabels())
				}
			}
		})
	}
}

func TestPlanRefusesWhatItCannotPlace(t *testing.T) {
	noNS := objs(t, "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n")
	tests := []struct {
		name string
		spec Spec
		want error
	}{
		{"a name that is not a DNS label", Spec{Name: "Not_A_Label", Gate: "g"}, ErrBadName},
		{"a name too long for its namespace", Spec{Name: "a123456789012345678901234567890123456789012345678901234567890", Gate: "g"}, ErrBadName},
		{"a Service without a namespace and no override", Spec{Name: "p", Gate: "g", Target: noNS, Preview: noNS}, ErrNoTargetNamespace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Plan(tt.spec); !errors.Is(err, tt.want) {
				t.Errorf("err %v, want %v", err, tt.want)
			}
		})
	}
	if set, err := Plan(Spec{Name: "p", Gate: "g", Target: noNS, Preview: noNS, TargetNamespace: "staging"}); err != nil || set.TargetNamespace != "staging" {
		t.Errorf("with previews.namespace: %v, target namespace %q", err, set.TargetNamespace)
	}
}
