package preview

import (
	"context"
	"errors"
	"fmt"
	"github.com/sluice-gitops/sluice/testenv"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-gitops/sluice/manifests"
)

// FieldManager is the server-side apply field owner of a preview's objects.
const FieldManager = "sluice-preview"

var (
	// ErrNotOwned: the namespace or object exists but is not labelled as
	// this preview's; Sluice neither changes nor removes it.
	ErrNotOwned = errors.New("not labelled as this preview's")
	// ErrNotFound: no preview of that name.
	ErrNotFound = errors.New("no such preview")
	// ErrNoGatewayAPI: routing gateway-api on a cluster without its CRDs.
	ErrNoGatewayAPI = errors.New("the cluster does not serve the Gateway API (HTTPRoute, ReferenceGrant): install its CRDs or use routing externalname")
)

var (
	namespaceGVK = schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}
	routeGVK     = schema.GroupVersionKind{Group: "gateway.networking.k8s.io", Version: "v1", Kind: "HTTPRoute"}
)

// Client writes, lists and removes previews on one cluster.
type Client struct {
	c   client.Client
	now func() time.Time
}

// New connects to the cluster cfg points at.
func New(cfg *rest.Config) (*Client, error) {
	c, err := testenv.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	return &Client{c: c, now: time.Now}, nil
}

// Info is one preview as the cluster has it.
type Info struct {
	Name, Gate, Source, Owner string
	// Revision is the branch tip the preview was built from ("" for a dir).
	Revision         string
	Expires, Created time.Time
	Objects          int
	Terminating      bool
}

// Expired reports whether the preview's expiry has passed at now.
func (i Info) Expired(now time.Time) bool { return !i.Expires.IsZero() && !now.Before(i.Expires) }

func owns(o metav1.Object, name string) bool {
	l := o.GetLabels()
	return l[manifests.LabelManagedBy] == manifests.ManagedByValue && l[LabelPreview] == name && name != ""
}

func ownLabels(name string) client.MatchingLabels {
	return client.MatchingLabels{manifests.LabelManagedBy: manifests.ManagedByValue, LabelPreview: name}
}

// Result says what Apply changed.
type Result struct {
	Applied int
	Removed []string
}

// Apply creates or updates the preview: its namespace, every object of the
// set (server-side apply), and removes the objects labelled as this
// preview's that the set no longer holds, in its namespace and elsewhere.
func (c *Client) Apply(ctx context.Context, s *Set) (Result, error) {
	var res Result
	name := s.Namespace.GetLabels()[LabelPreview]
	existing := &unstructured.Unstructured{}
	existing.SetGroupVersionKind(namespaceGVK)
	var oldKinds []string
	switch err := c.c.Get(ctx, client.ObjectKeyFromObject(s.Namespace), existing); {
	case err == nil:
		if !owns(existing, name) {
			return res, fmt.Errorf("namespace %s: %w", s.Namespace.GetName(), ErrNotOwned)
		}
		if existing.GetDeletionTimestamp() != nil {
			return res, fmt.Errorf("namespace %s is being removed: try again once it is gone", s.Namespace.GetName())
		}
		if k := existing.GetAnnotations()[AnnotationKinds]; k != "" {
			oldKinds = strings.Split(k, ",")
		}
	case !apierrors.IsNotFound(err):
		return res, fmt.Errorf("get namespace %s: %w", s.Namespace.GetName(), err)
	}
	if len(s.Routes) > 0 {
		if _, err := c.c.RESTMapper().RESTMapping(routeGVK.GroupKind(), routeGVK.Version); err != nil {
			if meta.IsNoMatchError(err) {
				return res, ErrNoGatewayAPI
			}
			return res, err
		}
	}
	if err := c.apply(ctx, s.Namespace); err != nil {
		return res, err
	}
	for _, o := range append(slices.Clone(s.Objects), s.Routes...) {
		if err := c.apply(ctx, o); err != nil {
			return res, err
		}
		res.Applied++
	}

	wanted := map[string]bool{}
	for _, o := range append(slices.Clone(s.Objects), s.Routes...) {
		wanted[objKey(o)] = true
	}
	kinds := map[string]bool{}
	for _, k := range append(oldKinds, splitKinds(s.Namespace)...) {
		kinds[k] = true
	}
	for _, k := range slices.Sorted(maps.Keys(kinds)) {
		gv, kind, ok := cutKind(k)
		if !ok {
			continue
		}
		removed, err := c.prune(ctx, gv.WithKind(kind), name, client.InNamespace(s.Namespace.GetName()), wanted)
		res.Removed = append(res.Removed, removed...)
		if err != nil {
			return res, err
		}
	}
	removed, err := c.prune(ctx, routeGVK, name, nil, wanted)
	res.Removed = append(res.Removed, removed...)
	return res, err
}

func splitKinds(ns *unstructured.Unstructured) []string {
	k := ns.GetAnnotations()[AnnotationKinds]
	if k == "" {
		return nil
	}
	return strings.Split(k, ",")
}

// cutKind splits "apps/v1/Deployment" or "v1/Service".
func cutKind(k string) (schema.GroupVersion, string, bool) {
	i := strings.LastIndex(k, "/")
	if i < 0 {
		return schema.GroupVersion{}, "", false
	}
	gv, err := schema.ParseGroupVersion(k[:i])
	return gv, k[i+1:], err == nil
}

func objKey(o *unstructured.Unstructured) string {
	return o.GroupVersionKind().GroupKind().String() + "/" + o.GetNamespace() + "/" + o.GetName()
}

func (c *Client) apply(ctx context.Context, o *unstructured.Unstructured) error {
	err := c.c.Patch(ctx, o.DeepCopy(), client.Apply, client.FieldOwner(FieldManager), client.ForceOwnership)
	if apierrors.IsInvalid(err) && o.GetKind() == "Service" && o.GroupVersionKind().Group == "" {
		// A Service that turns from a copy into a stand-in (or back) cannot
		// change its type in place: replace it, if it is ours.
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(o.GroupVersionKind())
		if gerr := c.c.Get(ctx, client.ObjectKeyFromObject(o), live); gerr == nil && owns(live, o.GetLabels()[LabelPreview]) {
			uid := live.GetUID()
			if derr := c.c.Delete(ctx, live, client.Preconditions{UID: &uid}); derr == nil {
				err = c.c.Patch(ctx, o.DeepCopy(), client.Apply, client.FieldOwner(FieldManager), client.ForceOwnership)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("apply %s %s/%s: %w", o.GetKind(), o.GetNamespace(), o.GetName(), err)
	}
	return nil
}

// prune deletes the objects of kind gvk labelled as preview name's that
// wanted does not hold (in the namespace opt names, or everywhere).
func (c *Client) prune(ctx context.Context, gvk schema.GroupVersionKind, name string, opt client.ListOption, wanted map[string]bool) ([]string, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	opts := []client.ListOption{ownLabels(name)}
	if opt != nil {
		opts = append(opts, opt)
	}
	if err := c.c.List(ctx, list, opts...); err != nil {
		if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
			return nil, nil // the kind is not served: nothing of it to remove
		}
		return nil, fmt.Errorf("list %s of preview %s: %w", gvk.Kind, name, err)
	}
	var removed []string
	for i := range list.Items {
		o := &list.Items[i]
		if wanted[objKey(o)] || !owns(o, name) || o.GetDeletionTimestamp() != nil {
			continue
		}
		uid := o.GetUID()
		err := c.c.Delete(ctx, o, client.Preconditions{UID: &uid}, client.PropagationPolicy(metav1.DeletePropagationBackground))
		if err != nil && !apierrors.IsNotFound(err) {
			return removed, fmt.Errorf("delete %s %s/%s: %w", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
		removed = append(removed, o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName())
	}
	return removed, nil
}

// Get returns the preview's record.
func (c *Client) Get(ctx context.Context, name string) (Info, error) {
	ns := &unstructured.Unstructured{}
	ns.SetGroupVersionKind(namespaceGVK)
	if err := c.c.Get(ctx, client.ObjectKey{Name: Namespace(name)}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return Info{}, fmt.Errorf("preview %s: %w", name, ErrNotFound)
		}
		return Info{}, fmt.Errorf("get namespace %s: %w", Namespace(name), err)
	}
	if !owns(ns, name) {
		return Info{}, fmt.Errorf("namespace %s: %w", Namespace(name), ErrNotOwned)
	}
	return info(ns), nil
}

func info(ns *unstructured.Unstructured) Info {
	a := ns.GetAnnotations()
	i := Info{
		Name:        ns.GetLabels()[LabelPreview],
		Gate:        ns.GetLabels()[manifests.LabelGate],
		Source:      a[AnnotationSource],
		Owner:       a[AnnotationOwner],
		Revision:    a[AnnotationRevision],
		Created:     ns.GetCreationTimestamp().Time,
		Terminating: ns.GetDeletionTimestamp() != nil,
	}
	i.Expires, _ = time.Parse(time.RFC3339, a[AnnotationExpires])
	i.Objects, _ = strconv.Atoi(a[AnnotationObjects])
	return i
}

// List returns every preview on the cluster, by name.
func (c *Client) List(ctx context.Context) ([]Info, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(schema.GroupVersionKind{Version: "v1", Kind: "NamespaceList"})
	if err := c.c.List(ctx, list, client.MatchingLabels{manifests.LabelManagedBy: manifests.ManagedByValue}, client.HasLabels{LabelPreview}); err != nil {
		return nil, fmt.Errorf("list previews: %w", err)
	}
	var out []Info
	for i := range list.Items {
		ns := &list.Items[i]
		if n := ns.GetLabels()[LabelPreview]; ns.GetName() == Namespace(n) && owns(ns, n) {
			out = append(out, info(ns))
		}
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Delete removes the preview: its namespace and every object labelled as
// its own elsewhere (its HTTPRoutes). A preview that is not there is no
// error.
func (c *Client) Delete(ctx context.Context, name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if _, err := c.prune(ctx, routeGVK, name, nil, nil); err != nil {
		return err
	}
	ns := &unstructured.Unstructured{}
	ns.SetGroupVersionKind(namespaceGVK)
	if err := c.c.Get(ctx, client.ObjectKey{Name: Namespace(name)}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("get namespace %s: %w", Namespace(name), err)
	}
	if !owns(ns, name) {
		return fmt.Errorf("namespace %s: %w", Namespace(name), ErrNotOwned)
	}
	if ns.GetDeletionTimestamp() != nil {
		return nil
	}
	uid := ns.GetUID()
	err := c.c.Delete(ctx, ns, client.Preconditions{UID: &uid}, client.PropagationPolicy(metav1.DeletePropagationBackground))
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete namespace %s: %w", Namespace(name), err)
	}
	return nil
}

// GC removes every preview whose expiry has passed, and the HTTPRoutes of
// previews whose namespace is gone; it returns the previews it removed.
func (c *Client) GC(ctx context.Context) ([]string, error) { return c.GCOf(ctx, nil) }

// GCOf is GC for the previews of the gates mine selects (nil: all), so
// that replicas sharing the gates never remove the same preview. The
// HTTPRoutes of previews whose namespace is gone belong to no gate: they
// are removed when mine selects "".
func (c *Client) GCOf(ctx context.Context, mine func(gate string) bool) ([]string, error) {
	all, err := c.List(ctx)
	if err != nil {
		return nil, err
	}
	now := c.now()
	live := map[string]bool{}
	var removed []string
	for _, p := range all {
		if p.Terminating || !p.Expired(now) || mine != nil && !mine(p.Gate) {
			live[p.Name] = !p.Terminating
			continue
		}
		if err := c.Delete(ctx, p.Name); err != nil {
			return removed, err
		}
		removed = append(removed, p.Name)
	}
	if mine != nil && !mine("") {
		return removed, nil
	}
	routes := &unstructured.UnstructuredList{}
	routes.SetGroupVersionKind(routeGVK.GroupVersion().WithKind("HTTPRouteList"))
	err = c.c.List(ctx, routes, client.MatchingLabels{manifests.LabelManagedBy: manifests.ManagedByValue}, client.HasLabels{LabelPreview})
	if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
		return removed, nil
	}
	if err != nil {
		return removed, fmt.Errorf("list HTTPRoutes of previews: %w", err)
	}
	orphans := map[string]bool{}
	for _, r := range routes.Items {
		if n := r.GetLabels()[LabelPreview]; !live[n] && CheckName(n) == nil {
			orphans[n] = true
		}
	}
	for _, n := range slices.Sorted(maps.Keys(orphans)) {
		if _, err := c.prune(ctx, routeGVK, n, nil, nil); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// ClearTests removes the test Jobs and Pods of an earlier run from the
// preview's namespace, and waits until they are gone, so that a new run
// starts from nothing.
func (c *Client) ClearTests(ctx context.Context, tests []*unstructured.Unstructured) error {
	for _, t := range tests {
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(t.GroupVersionKind())
		err := c.c.Get(ctx, client.ObjectKeyFromObject(t), live)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("get %s %s: %w", t.GetKind(), t.GetName(), err)
		}
		if !owns(live, t.GetLabels()[LabelPreview]) {
			return fmt.Errorf("%s %s/%s: %w", t.GetKind(), t.GetNamespace(), t.GetName(), ErrNotOwned)
		}
		if err := c.c.Delete(ctx, live, client.PropagationPolicy(metav1.DeletePropagationForeground)); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete %s %s: %w", t.GetKind(), t.GetName(), err)
		}
		for {
			err := c.c.Get(ctx, client.ObjectKeyFromObject(t), live)
			if apierrors.IsNotFound(err) {
				break
			}
			if err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}
