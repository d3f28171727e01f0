package manifests

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/validate/content"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Labels Sluice puts on every object of a test environment, and the label
// that marks a test.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelGate      = "sluice.dev/gate"
	LabelCommit    = "sluice.dev/commit" // the full 40-hex sha fits a label value
	LabelTest      = "sluice.dev/test"   // "true" on Jobs and Pods that test the environment

	// ManagedByValue is the value of LabelManagedBy.
	ManagedByValue = "sluice"
	// AnnotationCreatedAt holds when the test namespace was made (RFC 3339),
	// so leftovers can be told by age.
	AnnotationCreatedAt = "sluice.dev/created-at"

	// sluicePrefix starts every label and annotation key that is Sluice's.
	sluicePrefix = "sluice.dev/"
)

// ClusterScopedPolicy says what a test environment does with cluster-scoped
// objects, which it cannot copy into its namespace.
type ClusterScopedPolicy string

const (
	ClusterScopedDryRun ClusterScopedPolicy = "dry-run" // default: validated by server-side dry-run, never applied
	ClusterScopedIgnore ClusterScopedPolicy = "ignore"  // dropped
)

// OverlayOptions says where and under which labels a test environment goes.
type OverlayOptions struct {
	Namespace string            // test namespace, e.g. sluice-staging-1a2b3c4
	Gate      string            // value of LabelGate
	Commit    string            // full sha of the queued commit, value of LabelCommit
	Labels    map[string]string // extra labels; Sluice's own win over them
	// IsNamespaced tells the scope of a kind, usually from the cluster's
	// RESTMapper, and is asked first: the scope of a kind the cluster serves
	// comes from the cluster. For a kind it does not serve (a
	// meta.NoKindMatchError), the built-in table of well-known cluster-scoped
	// kinds is asked, then the CRDs in the rendering; any other kind is
	// namespaced. nil means the same without the cluster.
	IsNamespaced func(gvk schema.GroupVersionKind) (bool, error)
	// ClusterScoped is what to do with cluster-scoped objects; "" means
	// ClusterScopedDryRun.
	ClusterScoped ClusterScopedPolicy
	// Now stamps the namespace's AnnotationCreatedAt; nil means time.Now.
	Now func() time.Time
	// CommitOnNamespaceOnly puts LabelCommit on the namespace and the
	// tests only, not on the other objects and their pod templates: an
	// environment updated from one candidate to the next then changes
	// only what the commits changed (a commit label would roll every
	// workload).
	CommitOnNamespaceOnly bool
}

// TestEnvironment is a rendering moved into a test namespace.
type TestEnvironment struct {
	Namespace     *unstructured.Unstructured   // the test namespace object, labelled
	Objects       []*unstructured.Unstructured // namespaced objects moved into Namespace (apply these)
	ClusterScoped []*unstructured.Unstructured // cluster-scoped objects to validate by dry-run (empty under ClusterScopedIgnore)
	Tests         []*unstructured.Unstructured // objects labelled sluice.dev/test: "true" (Jobs, Pods), moved into Namespace, applied only after health
	Dropped       []string                     // what was left out, e.g. "Namespace/staging"
}

// Overlay puts a rendering into a test namespace: namespaced objects are moved
// into opts.Namespace, every object is labelled as Sluice's (pod templates
// too, selectors never), references to the original namespaces (RoleBinding
// subjects, webhook and APIService services) follow the objects, and the
// original Namespace objects are replaced by the test namespace, which keeps
// their labels (pod security, mesh injection) under Sluice's own.
//
// The input objects are never changed. Objects that cannot share one
// namespace (the same kind and name in two original namespaces), or a test
// that is not namespaced, are a *RenderError.
func Overlay(objs []*unstructured.Unstructured, opts OverlayOptions) (*TestEnvironment, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	labels := opts.labels()
	objLabels := labels // of everything but the namespace and the tests
	if opts.CommitOnNamespaceOnly {
		objLabels = map[string]string{}
		for k, v := range labels {
			if k != LabelCommit {
				objLabels[k] = v
			}
		}
	}
	scope := newScoper(objs, opts.IsNamespaced)

	env := &TestEnvironment{}
	var origNamespaces []*unstructured.Unstructured
	originals := map[string]bool{} // names of the original namespaces
	owners := map[schema.GroupKind]map[string]string{}
	for _, in := range objs {
		if in == nil {
			continue
		}
		gvk := in.GroupVersionKind()
		if gvk.Kind == "" || in.GetName() == "" {
			return nil, &RenderError{Path: objectName(in), Reason: "has no kind or no name"}
		}
		if gvk.Group == "" && gvk.Kind == "Namespace" {
			origNamespaces = append(origNamespaces, in)
			originals[in.GetName()] = true
			env.Dropped = append(env.Dropped, "Namespace/"+in.GetName())
			continue
		}
		namespaced, err := scope.isNamespaced(gvk)
		if err != nil {
			return nil, err
		}
		isTest := in.GetLabels()[LabelTest] == "true"
		if !namespaced {
			if isTest {
				return nil, &RenderError{Path: objectName(in), Reason: fmt.Sprintf("is labelled %s=true but is cluster-scoped; a test must be namespaced", LabelTest)}
			}
			if opts.ClusterScoped == ClusterScopedIgnore {
				env.Dropped = append(env.Dropped, gvk.Kind+"/"+in.GetName())
				continue
			}
			obj := in.DeepCopy()
			// Kustomize puts custom kinds it has no schema for into its
			// namespace, cluster-scoped or not; the API server would not.
			obj.SetNamespace("")
			setLabels(obj, objLabels)
			env.ClusterScoped = append(env.ClusterScoped, obj)
			continue
		}
		if ns := in.GetNamespace(); ns != "" {
			originals[ns] = true
		}
		gk := gvk.GroupKind()
		if owners[gk] == nil {
			owners[gk] = map[string]string{}
		}
		if prev, ok := owners[gk][in.GetName()]; ok {
			return nil, &RenderError{Path: objectName(in), Reason: fmt.Sprintf("collides with %s in the test namespace", prev)}
		}
		owners[gk][in.GetName()] = objectName(in)
		obj := in.DeepCopy()
		obj.SetNamespace(opts.Namespace)
		if isTest {
			setLabels(obj, labels)
			env.Tests = append(env.Tests, obj)
		} else {
			setLabels(obj, objLabels)
			env.Objects = append(env.Objects, obj)
		}
	}

	for _, list := range [][]*unstructured.Unstructured{env.Objects, env.Tests, env.ClusterScoped} {
		for _, obj := range list {
			if err := rewriteNamespaceRefs(obj, originals, opts.Namespace); err != nil {
				return nil, &RenderError{Path: objectName(obj), Reason: "rewrite namespace references", Err: err}
			}
		}
	}
	env.Namespace = testNamespaceObject(opts, labels, origNamespaces)
	return env, nil
}

func (o OverlayOptions) validate() error {
	if errs := content.IsDNS1123Label(o.Namespace); len(errs) > 0 {
		return fmt.Errorf("test namespace %q: %s", o.Namespace, strings.Join(errs, "; "))
	}
	if o.Gate == "" {
		return errors.New("overlay needs the gate's name")
	}
	for what, v := range map[string]string{"gate": o.Gate, "commit": o.Commit} {
		if errs := content.IsLabelValue(v); len(errs) > 0 {
			return fmt.Errorf("%s %q is not a label value: %s", what, v, strings.Join(errs, "; "))
		}
	}
	for k, v := range o.Labels {
		if errs := content.IsLabelKey(k); len(errs) > 0 {
			return fmt.Errorf("label key %q: %s", k, strings.Join(errs, "; "))
		}
		if errs := content.IsLabelValue(v); len(errs) > 0 {
			return fmt.Errorf("label %s value %q: %s", k, v, strings.Join(errs, "; "))
		}
	}
	switch o.ClusterScoped {
	case "", ClusterScopedDryRun, ClusterScopedIgnore:
	default:
		return fmt.Errorf("unknown cluster-scoped policy %q", o.ClusterScoped)
	}
	return nil
}

// labels returns the labels every object of the environment gets.
func (o OverlayOptions) labels() map[string]string {
	l := make(map[string]string, len(o.Labels)+3)
	for k, v := range o.Labels {
		l[k] = v
	}
	l[LabelManagedBy] = ManagedByValue
	l[LabelGate] = o.Gate
	if o.Commit != "" {
		l[LabelCommit] = o.Commit
	}
	return l
}

// podTemplates are where workloads keep the templates of what they make
// (pods, and a CronJob's jobs), so those carry the environment's labels too.
var podTemplates = map[schema.GroupKind][][]string{
	{Group: "apps", Kind: "Deployment"}:  {{"spec", "template"}},
	{Group: "apps", Kind: "StatefulSet"}: {{"spec", "template"}},
	{Group: "apps", Kind: "DaemonSet"}:   {{"spec", "template"}},
	{Group: "apps", Kind: "ReplicaSet"}:  {{"spec", "template"}},
	{Group: "batch", Kind: "Job"}:        {{"spec", "template"}},
	{Group: "batch", Kind: "CronJob"}: {
		{"spec", "jobTemplate"},
		{"spec", "jobTemplate", "spec", "template"},
	},
}

// setLabels adds labels to obj's metadata and its templates. Selectors are
// left alone: adding labels to what they select keeps it selected.
func setLabels(obj *unstructured.Unstructured, labels map[string]string) {
	obj.SetLabels(merge(obj.GetLabels(), labels))
	for _, fields := range podTemplates[obj.GroupVersionKind().GroupKind()] {
		if _, found, err := unstructured.NestedMap(obj.Object, fields...); err != nil || !found {
			continue
		}
		at := append(slices.Clone(fields), "metadata", "labels")
		existing, _, err := unstructured.NestedStringMap(obj.Object, at...)
		if err != nil {
			continue // not labels kustomize would have let through; leave it
		}
		merged := merge(existing, labels)
		l := make(map[string]any, len(merged))
		for k, v := range merged {
			l[k] = v
		}
		_ = unstructured.SetNestedMap(obj.Object, l, at...)
	}
}

func merge(base, over map[string]string) map[string]string {
	out := make(map[string]string, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

// rewriteNamespaceRefs points the obvious same-namespace references of obj
// that name one of the original namespaces at ns instead.
func rewriteNamespaceRefs(obj *unstructured.Unstructured, originals map[string]bool, ns string) error {
	gk := obj.GroupVersionKind().GroupKind()
	switch gk {
	case schema.GroupKind{Group: "rbac.authorization.k8s.io", Kind: "RoleBinding"},
		schema.GroupKind{Group: "rbac.authorization.k8s.io", Kind: "ClusterRoleBinding"}:
		subjects, found, err := unstructured.NestedSlice(obj.Object, "subjects")
		if err != nil || !found {
			return err
		}
		for _, s := range subjects {
			if m, ok := s.(map[string]any); ok {
				if v, ok := m["namespace"].(string); ok && originals[v] {
					m["namespace"] = ns
				}
			}
		}
		return unstructured.SetNestedSlice(obj.Object, subjects, "subjects")
	case schema.GroupKind{Group: "admissionregistration.k8s.io", Kind: "ValidatingWebhookConfiguration"},
		schema.GroupKind{Group: "admissionregistration.k8s.io", Kind: "MutatingWebhookConfiguration"}:
		hooks, found, err := unstructured.NestedSlice(obj.Object, "webhooks")
		if err != nil || !found {
			return err
		}
		for _, h := range hooks {
			if m, ok := h.(map[string]any); ok {
				rewriteString(m, originals, ns, "clientConfig", "service", "namespace")
			}
		}
		return unstructured.SetNestedSlice(obj.Object, hooks, "webhooks")
	case schema.GroupKind{Group: "apiregistration.k8s.io", Kind: "APIService"}:
		rewriteString(obj.Object, originals, ns, "spec", "service", "namespace")
	case schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}:
		rewriteString(obj.Object, originals, ns, "spec", "conversion", "webhook", "clientConfig", "service", "namespace")
	}
	return nil
}

func rewriteString(m map[string]any, originals map[string]bool, ns string, fields ...string) {
	v, found, err := unstructured.NestedString(m, fields...)
	if err == nil && found && originals[v] {
		_ = unstructured.SetNestedField(m, ns, fields...)
	}
}

// testNamespaceObject makes the test namespace. It keeps the labels and
// annotations of the original Namespace objects, so the test runs under the
// same pod security and mesh settings, with Sluice's labels over them.
func testNamespaceObject(opts OverlayOptions, labels map[string]string, originals []*unstructured.Unstructured) *unstructured.Unstructured {
	l := map[string]string{}
	a := map[string]string{}
	for _, o := range originals {
		l = merge(l, o.GetLabels())
		a = merge(a, o.GetAnnotations())
	}
	// Sluice's own keys on the test namespace are Sluice's alone: a commit's
	// Namespace must not set sluice.dev/keep-until (kept forever) or a gate.
	for _, m := range []map[string]string{l, a} {
		for k := range m {
			if strings.HasPrefix(k, sluicePrefix) {
				delete(m, k)
			}
		}
	}
	delete(l, "kubernetes.io/metadata.name") // the API server sets it to the name
	delete(a, "kubectl.kubernetes.io/last-applied-configuration")
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	a[AnnotationCreatedAt] = now().UTC().Format(time.RFC3339)

	ns := &unstructured.Unstructured{Object: map[string]any{}}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(opts.Namespace)
	ns.SetLabels(merge(l, labels))
	ns.SetAnnotations(a)
	return ns
}

// objectName names an object for people: Kind/namespace/name, or Kind/name
// when it has no namespace.
func objectName(obj *unstructured.Unstructured) string {
	if ns := obj.GetNamespace(); ns != "" {
		return obj.GetKind() + "/" + ns + "/" + obj.GetName()
	}
	return obj.GetKind() + "/" + obj.GetName()
}

// scoper tells whether a kind is namespaced.
type scoper struct {
	crds   map[schema.GroupKind]renderedCRD // from CRDs in the rendering
	lookup func(schema.GroupVersionKind) (bool, error)
}

// renderedCRD is what a CRD of the rendering says about its kind.
type renderedCRD struct {
	name       string // Kind/name of the CRD, for errors
	namespaced bool
}

func newScoper(objs []*unstructured.Unstructured, lookup func(schema.GroupVersionKind) (bool, error)) *scoper {
	s := &scoper{crds: map[schema.GroupKind]renderedCRD{}, lookup: lookup}
	for _, o := range objs {
		if o == nil || o.GroupVersionKind().GroupKind() != (schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}) {
			continue
		}
		group, _, _ := unstructured.NestedString(o.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
		scope, _, _ := unstructured.NestedString(o.Object, "spec", "scope")
		if kind != "" {
			s.crds[schema.GroupKind{Group: group, Kind: kind}] = renderedCRD{name: objectName(o), namespaced: scope != "Cluster"}
		}
	}
	return s
}

// isNamespaced asks the cluster first: a kind it serves has the scope it
// serves it with, whatever a rendered CRD says. A rendered CRD is consulted
// only for a kind the cluster does not serve (yet), and never for a
// well-known built-in kind: a commit cannot declare ClusterRoleBinding
// "Namespaced" and have it applied, cluster-wide, as if it were. A rendered
// CRD that contradicts the scope the cluster (or the built-in table) gives
// its kind is a *RenderError: the API server would never serve it so (a
// CRD's scope cannot change, and a built-in kind is not a CRD's).
func (s *scoper) isNamespaced(gvk schema.GroupVersionKind) (bool, error) {
	crd, declared := s.crds[gvk.GroupKind()]
	known := func(namespaced bool, by string) (bool, error) {
		if declared && crd.namespaced != namespaced {
			return false, &RenderError{Path: crd.name, Reason: fmt.Sprintf("field spec.scope declares %s %s, but %s it %s", gvk.GroupKind(), scopeName(crd.namespaced), by, scopeName(namespaced))}
		}
		return namespaced, nil
	}
	if s.lookup != nil {
		namespaced, err := s.lookup(gvk)
		if err == nil {
			return known(namespaced, "the cluster serves")
		}
		if !meta.IsNoMatchError(err) {
			return false, fmt.Errorf("find the scope of %s: %w", gvk.Kind, err)
		}
	}
	if clusterScoped[gvk.GroupKind()] {
		return known(false, "Kubernetes defines")
	}
	if declared {
		return crd.namespaced, nil
	}
	return true, nil
}

func scopeName(namespaced bool) string {
	if namespaced {
		return "Namespaced"
	}
	return "Cluster"
}

// clusterScoped lists the well-known cluster-scoped kinds of Kubernetes.
// Any other kind is taken to be namespaced.
var clusterScoped = map[schema.GroupKind]bool{
	{Group: "", Kind: "Namespace"}:                                                    true,
	{Group: "", Kind: "Node"}:                                                         true,
	{Group: "", Kind: "PersistentVolume"}:                                             true,
	{Group: "", Kind: "ComponentStatus"}:                                              true,
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole"}:                         true,
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRoleBinding"}:                  true,
	{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}:                 true,
	{Group: "apiregistration.k8s.io", Kind: "APIService"}:                             true,
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingWebhookConfiguration"}:   true,
	{Group: "admissionregistration.k8s.io", Kind: "MutatingWebhookConfiguration"}:     true,
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingAdmissionPolicy"}:        true,
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingAdmissionPolicyBinding"}: true,
	{Group: "admissionregistration.k8s.io", Kind: "MutatingAdmissionPolicy"}:          true,
	{Group: "admissionregistration.k8s.io", Kind: "MutatingAdmissionPolicyBinding"}:   true,
	{Group: "storage.k8s.io", Kind: "StorageClass"}:                                   true,
	{Group: "storage.k8s.io", Kind: "CSIDriver"}:                                      true,
	{Group: "storage.k8s.io", Kind: "CSINode"}:                                        true,
	{Group: "storage.k8s.io", Kind: "VolumeAttachment"}:                               true,
	{Group: "storage.k8s.io", Kind: "VolumeAttributesClass"}:                          true,
	{Group: "scheduling.k8s.io", Kind: "PriorityClass"}:                               true,
	{Group: "node.k8s.io", Kind: "RuntimeClass"}:                                      true,
	{Group: "networking.k8s.io", Kind: "IngressClass"}:                                true,
	{Group: "networking.k8s.io", Kind: "IPAddress"}:                                   true,
	{Group: "networking.k8s.io", Kind: "ServiceCIDR"}:                                 true,
	{Group: "policy", Kind: "PodSecurityPolicy"}:                                      true,
	{Group: "certificates.k8s.io", Kind: "CertificateSigningRequest"}:                 true,
	{Group: "certificates.k8s.io", Kind: "ClusterTrustBundle"}:                        true,
	{Group: "flowcontrol.apiserver.k8s.io", Kind: "FlowSchema"}:                       true,
	{Group: "flowcontrol.apiserver.k8s.io", Kind: "PriorityLevelConfiguration"}:       true,
	{Group: "resource.k8s.io", Kind: "DeviceClass"}:                                   true,
	{Group: "resource.k8s.io", Kind: "ResourceSlice"}:                                 true,
	{Group: "internal.apiserver.k8s.io", Kind: "StorageVersion"}:                      true,
}

// TestNamespace returns the default test namespace of a gate and commit:
// "sluice-<gate>-<first 7 of sha>", lower-cased, with anything a namespace
// name cannot hold replaced by '-', and the gate's part shortened so that
// the whole is a DNS-1123 label of at most 63 characters.
func TestNamespace(gate, commit string) string {
	const prefix = "sluice"
	sha := sanitizeLabel(commit)
	if len(sha) > 7 {
		sha = strings.TrimRight(sha[:7], "-")
	}
	g := sanitizeLabel(gate)
	if room := 63 - len(prefix) - len(sha) - 2; len(g) > room {
		g = strings.TrimRight(g[:room], "-")
	}
	parts := []string{prefix}
	for _, p := range []string{g, sha} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "-")
}

// sanitizeLabel lower-cases s and keeps only [a-z0-9-], with single dashes
// between runs of the rest, and none at either end.
func sanitizeLabel(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
			continue
		}
		dash = true
	}
	return b.String()
}
