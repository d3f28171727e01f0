package preview

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/sluice-gitops/sluice/manifests"
)

// Labels and annotations of a preview's objects.
const (
	// LabelPreview names the preview an object belongs to.
	LabelPreview = "sluice.dev/preview"
	// AnnotationOwner is who asked for the preview.
	AnnotationOwner = "sluice.dev/owner"
	// AnnotationExpires is when the preview may be removed (RFC 3339). It is
	// the test namespaces' keep-until, so the gate's own cleanup of leftover
	// namespaces leaves a preview alone until then.
	AnnotationExpires = "sluice.dev/keep-until"
	// AnnotationSource is where the preview's changes come from:
	// "branch NAME" or "dir PATH".
	AnnotationSource = "sluice.dev/preview-source"
	// AnnotationRevision is the branch tip the preview was built from.
	AnnotationRevision = "sluice.dev/preview-revision"
	// AnnotationObjects is how many objects the preview wrote.
	AnnotationObjects = "sluice.dev/preview-objects"
	// AnnotationKinds lists the kinds the preview wrote, so the next update
	// can remove those no longer wanted.
	AnnotationKinds = "sluice.dev/preview-kinds"
	// AnnotationTargetNamespace is where the stand-ins point.
	AnnotationTargetNamespace = "sluice.dev/preview-target-namespace"

	// HeaderPreview is the request header Gateway API routing matches on.
	HeaderPreview = "x-sluice-preview"
	// NamespacePrefix starts every preview namespace's name.
	NamespacePrefix = "sluice-preview-"
)

// Routing modes.
const (
	RoutingExternalName = "externalname"
	RoutingGatewayAPI   = "gateway-api"
)

var (
	// ErrBadName: a preview name that is not a DNS label short enough for
	// its namespace name.
	ErrBadName = errors.New("not a preview name")
	// ErrNoTargetNamespace: a Service of the target render has no namespace
	// and the gate's previews.namespace is not set.
	ErrNoTargetNamespace = errors.New("no target namespace")
)

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// CheckName refuses a name that cannot name a namespace sluice-preview-NAME.
func CheckName(name string) error {
	if !dnsLabel.MatchString(name) || len(NamespacePrefix)+len(name) > 63 {
		return fmt.Errorf("%q: %w: want lower-case letters, digits and '-', starting and ending with a letter or digit, at most %d characters", name, ErrBadName, 63-len(NamespacePrefix))
	}
	return nil
}

// Namespace is the preview's namespace.
func Namespace(name string) string { return NamespacePrefix + name }

// Spec is one preview to plan.
type Spec struct {
	Name, Gate string
	// Source is AnnotationSource's value; Revision AnnotationRevision's.
	Source, Revision string
	Owner            string
	Expires          time.Time
	// Target and Preview are the gate's render of the target branch and
	// of the preview's tree (manifests.Render's output).
	Target, Preview []*unstructured.Unstructured
	// TargetNamespace overrides the namespace the target's objects run in.
	TargetNamespace string
	Routing         string
}

// Set is what a preview writes.
type Set struct {
	Namespace *unstructured.Unstructured
	// Objects go into the preview's namespace: the changed workloads, what
	// they reference, their Services and the stand-ins.
	Objects []*unstructured.Unstructured
	// Routes go into the target's namespace (Gateway API routing).
	Routes []*unstructured.Unstructured
	// Tests are the gate's test Jobs and Pods, moved into the namespace.
	Tests []*unstructured.Unstructured
	// Changed names the workloads that differ from the target's, as
	// Kind/name; StandIns the Services routed to the target.
	Changed, StandIns []string
	// TargetNamespace is where the stand-ins point.
	TargetNamespace string
}

// workloads are the kinds that run Pods, with the path of their pod spec.
var workloads = map[schema.GroupKind][]string{
	{Group: "apps", Kind: "Deployment"}:  {"spec", "template", "spec"},
	{Group: "apps", Kind: "StatefulSet"}: {"spec", "template", "spec"},
	{Group: "apps", Kind: "DaemonSet"}:   {"spec", "template", "spec"},
	{Group: "apps", Kind: "ReplicaSet"}:  {"spec", "template", "spec"},
	{Group: "batch", Kind: "Job"}:        {"spec", "template", "spec"},
	{Group: "batch", Kind: "CronJob"}:    {"spec", "jobTemplate", "spec", "template", "spec"},
	{Group: "", Kind: "Pod"}:             {"spec"},
}

var (
	serviceGK   = schema.GroupKind{Kind: "Service"}
	referenceGK = map[string]schema.GroupKind{
		"ConfigMap":      {Kind: "ConfigMap"},
		"Secret":         {Kind: "Secret"},
		"ServiceAccount": {Kind: "ServiceAccount"},
	}
)

func key(o *unstructured.Unstructured) string {
	gk := o.GroupVersionKind().GroupKind()
	return gk.String() + "/" + o.GetName()
}

func refKey(kind, name string) string { return referenceGK[kind].String() + "/" + name }

func isTest(o *unstructured.Unstructured) bool { return o.GetLabels()[manifests.LabelTest] == "true" }

// Plan compares the two renders and says what the preview writes: the
// workloads that differ from the target's (or that a changed ConfigMap,
// Secret or ServiceAccount of theirs makes differ), what they reference,
// the Services that select them, and for every other Service of the
// target a stand-in that routes to the target's.
func Plan(s Spec) (*Set, error) {
	if err := CheckName(s.Name); err != nil {
		return nil, err
	}
	ns := Namespace(s.Name)
	target := map[string]*unstructured.Unstructured{}
	for _, o := range s.Target {
		if !isTest(o) {
			target[key(o)] = o
		}
	}
	preview := map[string]*unstructured.Unstructured{}
	for _, o := range s.Preview {
		if !isTest(o) {
			preview[key(o)] = o
		}
	}
	differs := func(k string) bool {
		t, ok := target[k]
		return !ok || !equality.Semantic.DeepEqual(t.Object, preview[k].Object)
	}

	want := map[string]bool{}
	var changed []string
	podLabels := []map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(preview)) {
		o := preview[k]
		path, ok := workloads[o.GroupVersionKind().GroupKind()]
		if !ok {
			continue
		}
		refs := references(o, path)
		hit := differs(k)
		for _, r := range refs {
			if _, ok := preview[r]; ok && differs(r) {
				hit = true
			}
		}
		if !hit {
			continue
		}
		want[k] = true
		changed = append(changed, o.GetKind()+"/"+o.GetName())
		for _, r := range refs {
			if _, ok := preview[r]; ok {
				want[r] = true
			}
		}
		tmpl := path[:len(path)-1]
		l, _, _ := unstructured.NestedStringMap(o.Object, append(slices.Clone(tmpl), "metadata", "labels")...)
		if o.GetKind() == "Pod" {
			l = o.GetLabels()
		}
		podLabels = append(podLabels, l)
	}

	// A Service that selects a changed workload's Pods is the preview's own.
	var own []string // Service names
	for _, k := range slices.Sorted(maps.Keys(preview)) {
		o := preview[k]
		if o.GroupVersionKind().GroupKind() != serviceGK {
			continue
		}
		sel, _, _ := unstructured.NestedStringMap(o.Object, "spec", "selector")
		_, inTarget := target[k]
		if selectsAny(sel, podLabels) || !inTarget {
			want[k] = true
			if inTarget {
				own = append(own, o.GetName())
			}
		}
	}

	var objs []*unstructured.Unstructured
	for _, o := range s.Preview {
		if want[key(o)] || isTest(o) {
			objs = append(objs, o)
		}
	}
	env, err := manifests.Overlay(objs, manifests.OverlayOptions{
		Namespace:     ns,
		Gate:          s.Gate,
		Labels:        map[string]string{LabelPreview: s.Name},
		ClusterScoped: manifests.ClusterScopedIgnore,
		Now:           func() time.Time { return time.Time{} },
	})
	if err != nil {
		return nil, err
	}
	labels := map[string]string{
		manifests.LabelManagedBy: manifests.ManagedByValue,
		manifests.LabelGate:      s.Gate,
		LabelPreview:             s.Name,
	}

	set := &Set{Objects: env.Objects, Tests: env.Tests, Changed: changed}
	set.TargetNamespace = s.TargetNamespace
	for _, k := range slices.Sorted(maps.Keys(target)) {
		t := target[k]
		if t.GroupVersionKind().GroupKind() != serviceGK || want[k] {
			continue
		}
		tns := cmpOr(s.TargetNamespace, t.GetNamespace())
		if tns == "" {
			return nil, fmt.Errorf("Service %s: %w: the render gives it none; set the gate's previews.namespace", t.GetName(), ErrNoTargetNamespace)
		}
		if set.TargetNamespace == "" {
			set.TargetNamespace = tns
		}
		set.Objects = append(set.Objects, standIn(t, ns, tns, labels))
		set.StandIns = append(set.StandIns, t.GetName())
	}
	if s.Routing == RoutingGatewayAPI && len(own) > 0 {
		for _, name := range own {
			t := target[serviceGK.String()+"/"+name]
			tns := cmpOr(s.TargetNamespace, t.GetNamespace())
			if tns == "" {
				return nil, fmt.Errorf("Service %s: %w: the render gives it none; set the gate's previews.namespace", name, ErrNoTargetNamespace)
			}
			if set.TargetNamespace == "" {
				set.TargetNamespace = tns
			}
			route, err := httpRoute(s.Name, t, ns, tns, labels)
			if err != nil {
				return nil, err
			}
			set.Routes = append(set.Routes, route)
		}
		set.Objects = append(set.Objects, referenceGrant(s.Name, ns, set.TargetNamespace, labels))
	}

	nsObj := env.Namespace
	a := map[string]string{
		AnnotationOwner:    s.Owner,
		AnnotationExpires:  s.Expires.UTC().Format(time.RFC3339),
		AnnotationSource:   s.Source,
		AnnotationRevision: s.Revision,
		AnnotationObjects:  fmt.Sprint(len(set.Objects) + len(set.Routes)),
		AnnotationKinds:    strings.Join(kinds(set.Objects), ","),
	}
	if set.TargetNamespace != "" {
		a[AnnotationTargetNamespace] = set.TargetNamespace
	}
	for k, v := range a {
		if v == "" {
			delete(a, k)
		}
	}
	nsObj.SetAnnotations(a)
	set.Namespace = nsObj
	return set, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// kinds lists the apiVersion/kind pairs of objs, sorted, each once.
func kinds(objs []*unstructured.Unstructured) []string {
	seen := map[string]bool{}
	for _, o := range objs {
		seen[o.GetAPIVersion()+"/"+o.GetKind()] = true
	}
	return slices.Sorted(maps.Keys(seen))
}

func selectsAny(sel map[string]string, pods []map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
next:
	for _, l := range pods {
		for k, v := range sel {
			if l[k] != v {
				continue next
			}
		}
		return true
	}
	return false
}

// references lists the ConfigMaps, Secrets and ServiceAccount a workload's
// pod spec names, as keys.
func references(o *unstructured.Unstructured, path []string) []string {
	spec, found, _ := unstructured.NestedMap(o.Object, path...)
	if !found {
		return nil
	}
	seen := map[string]bool{}
	add := func(kind, name string) {
		if name != "" {
			seen[refKey(kind, name)] = true
		}
	}
	if sa, ok := spec["serviceAccountName"].(string); ok {
		add("ServiceAccount", sa)
	}
	for _, s := range list(spec["imagePullSecrets"]) {
		add("Secret", str(s, "name"))
	}
	for _, v := range list(spec["volumes"]) {
		add("ConfigMap", str(v, "configMap", "name"))
		add("Secret", str(v, "secret", "secretName"))
		for _, src := range list(dig(v, "projected", "sources")) {
			add("ConfigMap", str(src, "configMap", "name"))
			add("Secret", str(src, "secret", "name"))
		}
	}
	for _, field := range []string{"containers", "initContainers"} {
		for _, c := range list(spec[field]) {
			for _, e := range list(dig(c, "envFrom")) {
				add("ConfigMap", str(e, "configMapRef", "name"))
				add("Secret", str(e, "secretRef", "name"))
			}
			for _, e := range list(dig(c, "env")) {
				add("ConfigMap", str(e, "valueFrom", "configMapKeyRef", "name"))
				add("Secret", str(e, "valueFrom", "secretKeyRef", "name"))
			}
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func str(v any, path ...string) string {
	s, _ := dig(v, path...).(string)
	return s
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

// standIn is an ExternalName Service named as the target's Service t, in
// the preview's namespace, that resolves to t in the target namespace.
func standIn(t *unstructured.Unstructured, ns, targetNS string, labels map[string]string) *unstructured.Unstructured {
	s := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "Service",
		"metadata": map[string]any{
			"name":      t.GetName(),
			"namespace": ns,
		},
		"spec": map[string]any{
			"type":         "ExternalName",
			"externalName": fmt.Sprintf("%s.%s.svc.cluster.local", t.GetName(), targetNS),
		},
	}}
	if ports, ok, _ := unstructured.NestedSlice(t.Object, "spec", "ports"); ok {
		var ps []any
		for _, p := range ports {
			m, _ := p.(map[string]any)
			q := map[string]any{}
			for _, f := range []string{"name", "port", "protocol"} {
				if v, ok := m[f]; ok {
					q[f] = v
				}
			}
			ps = append(ps, q)
		}
		_ = unstructured.SetNestedSlice(s.Object, ps, "spec", "ports")
	}
	s.SetLabels(maps.Clone(labels))
	return s
}

// httpRoute is a GAMMA route on the target's Service t that sends requests
// carrying HeaderPreview: name to the preview's copy of t.
func httpRoute(name string, t *unstructured.Unstructured, ns, targetNS string, labels map[string]string) (*unstructured.Unstructured, error) {
	ports, _, _ := unstructured.NestedSlice(t.Object, "spec", "ports")
	if len(ports) == 0 {
		return nil, fmt.Errorf("Service %s has no port to route", t.GetName())
	}
	port := dig(ports[0], "port")
	r := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1",
		"kind":       "HTTPRoute",
		"metadata": map[string]any{
			"name":      RouteName(name, t.GetName()),
			"namespace": targetNS,
		},
		"spec": map[string]any{
			"parentRefs": []any{map[string]any{"group": "", "kind": "Service", "name": t.GetName(), "port": port}},
			"rules": []any{map[string]any{
				"matches": []any{map[string]any{
					"headers": []any{map[string]any{"type": "Exact", "name": HeaderPreview, "value": name}},
				}},
				"backendRefs": []any{map[string]any{"group": "", "kind": "Service", "name": t.GetName(), "namespace": ns, "port": port}},
			}},
		},
	}}
	r.SetLabels(maps.Clone(labels))
	return r, nil
}

// RouteName is the name of the preview's HTTPRoute on service.
func RouteName(preview, service string) string {
	n := NamespacePrefix + preview + "-" + service
	if len(n) > 253 {
		n = n[:253]
	}
	return n
}

// referenceGrant lets HTTPRoutes in the target namespace send requests to
// the preview's Services.
func referenceGrant(name, ns, targetNS string, labels map[string]string) *unstructured.Unstructured {
	g := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1",
		"kind":       "ReferenceGrant",
		"metadata": map[string]any{
			"name":      NamespacePrefix + name,
			"namespace": ns,
		},
		"spec": map[string]any{
			"from": []any{map[string]any{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": targetNS}},
			"to":   []any{map[string]any{"group": "", "kind": "Service"}},
		},
	}}
	g.SetLabels(maps.Clone(labels))
	return g
}
