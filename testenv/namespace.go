package testenv

import (
	"context"
	"fmt"
	"sort"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-gitops/sluice/manifests"
)

func (k *Cluster) createNamespace(ctx context.Context, ns *unstructured.Unstructured, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	existing := &unstructured.Unstructured{}
	existing.SetGroupVersionKind(ns.GroupVersionKind())
	err := k.client.Get(ctx, client.ObjectKeyFromObject(ns), existing)
	switch {
	case err == nil:
		if !ownedBy(existing, ns.GetLabels()[manifests.LabelGate]) {
			return &NotOwnedError{Namespace: ns.GetName()}
		}
		// A leftover of an interrupted run of this very candidate: start clean.
		if err := k.deleteNamespace(ctx, ns.GetLabels()[manifests.LabelGate], ns.GetName()); err != nil {
			return fmt.Errorf("remove leftover namespace %s: %w", ns.GetName(), err)
		}
		if err := k.waitGone(ctx, existing); err != nil {
			return fmt.Errorf("remove leftover namespace %s: %w", ns.GetName(), err)
		}
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("get namespace %s: %w", ns.GetName(), err)
	}
	if err := k.client.Patch(ctx, ns.DeepCopy(), client.Apply, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return k.classify(ctx, StepApply, err)
	}
	return k.bindEnvironment(ctx, ns)
}

// relabelNamespace applies a reused namespace's object again: its labels
// name the candidate now in it.
func (k *Cluster) relabelNamespace(ctx context.Context, ns *unstructured.Unstructured, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := k.client.Patch(ctx, ns.DeepCopy(), client.Apply, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return k.classify(ctx, StepApply, err)
	}
	return nil
}

func (k *Cluster) waitGone(ctx context.Context, obj *unstructured.Unstructured) error {
	for {
		o := &unstructured.Unstructured{}
		o.SetGroupVersionKind(obj.GroupVersionKind())
		err := k.client.Get(ctx, client.ObjectKeyFromObject(obj), o)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(k.poll):
		}
	}
}

// ownedBy reports whether obj carries Sluice's labels for gate.
func ownedBy(obj metav1.Object, gate string) bool {
	l := obj.GetLabels()
	return l[manifests.LabelManagedBy] == manifests.ManagedByValue && l[manifests.LabelGate] == gate && gate != ""
}

// deleteNamespace deletes the namespace only if it is labelled as this
// gate's; the UID precondition makes sure it is the one that was checked.
func (k *Cluster) deleteNamespace(ctx context.Context, gate, name string) error {
	ns := &unstructured.Unstructured{}
	ns.SetGroupVersionKind(schema.GroupVersionKind{Version: "v1", Kind: "Namespace"})
	if err := k.client.Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	if !ownedBy(ns, gate) {
		return fmt.Errorf("namespace %s is not labelled as gate %s's: not deleting it", name, gate)
	}
	if ns.GetDeletionTimestamp() != nil {
		return nil
	}
	uid := ns.GetUID()
	err := k.client.Delete(ctx, ns, client.Preconditions{UID: &uid}, client.PropagationPolicy(metav1.DeletePropagationBackground))
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// keepNamespace marks a failed test's namespace to be kept until then.
// The time has nanoseconds, so that kept namespaces sort by age.
func (k *Cluster) keepNamespace(ctx context.Context, name string, until time.Time) error {
	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, AnnotationKeepUntil, until.UTC().Format(time.RFC3339Nano)))
	ns := &unstructured.Unstructured{}
	ns.SetGroupVersionKind(schema.GroupVersionKind{Version: "v1", Kind: "Namespace"})
	ns.SetName(name)
	return k.client.Patch(ctx, ns, client.RawPatch("application/merge-patch+json", patch))
}

// DefaultKeepNamespaceMax is how many failed namespaces a gate keeps at
// most when TestSpec.KeepNamespaceMax is 0. Their pods hold the cluster's
// capacity, which a long queue would otherwise fill.
const DefaultKeepNamespaceMax = 3

// ownNamespace is a namespace of the gate, as Cleanup and the keeping rules see it.
type ownNamespace struct {
	obj   *unstructured.Unstructured
	kept  bool      // it carries a keep-until time
	until time.Time // the keep-until time
}

// namespaces lists gate's own namespaces that are not being deleted.
func (k *Cluster) namespaces(ctx context.Context, gate string) ([]ownNamespace, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(schema.GroupVersionKind{Version: "v1", Kind: "NamespaceList"})
	sel := client.MatchingLabels{manifests.LabelManagedBy: manifests.ManagedByValue, manifests.LabelGate: gate}
	if err := k.client.List(ctx, list, sel); err != nil {
		return nil, fmt.Errorf("list namespaces of gate %s: %w", gate, err)
	}
	var out []ownNamespace
	for i := range list.Items {
		ns := &list.Items[i]
		if ns.GetDeletionTimestamp() != nil || !ownedBy(ns, gate) {
			continue
		}
		until, err := time.Parse(time.RFC3339, ns.GetAnnotations()[AnnotationKeepUntil])
		out = append(out, ownNamespace{obj: ns, kept: err == nil, until: until})
	}
	return out, nil
}

// expire removes gate's kept namespaces whose keep time has passed. It
// runs before every test, so a long pass does not pile them up.
func (k *Cluster) expire(ctx context.Context, gate string) error {
	all, err := k.namespaces(ctx, gate)
	if err != nil {
		return err
	}
	for _, ns := range all {
		if ns.kept && !k.now().Before(ns.until) {
			if err := k.deleteNamespace(ctx, gate, ns.obj.GetName()); err != nil {
				return fmt.Errorf("delete expired namespace %s: %w", ns.obj.GetName(), err)
			}
		}
	}
	return nil
}

// trimKept removes gate's kept namespaces beyond the newest max, oldest
// first; just is the one just kept, which stays.
func (k *Cluster) trimKept(ctx context.Context, gate, just string, max int) error {
	all, err := k.namespaces(ctx, gate)
	if err != nil {
		return err
	}
	var kept []ownNamespace
	for _, ns := range all {
		if ns.kept && ns.obj.GetName() != just {
			kept = append(kept, ns)
		}
	}
	// Oldest first: by keep-until (written with the same keep time), then
	// by creation.
	sort.Slice(kept, func(i, j int) bool {
		a, b := kept[i], kept[j]
		if !a.until.Equal(b.until) {
			return a.until.Before(b.until)
		}
		ca, cb := a.obj.GetCreationTimestamp(), b.obj.GetCreationTimestamp()
		if !ca.Equal(&cb) {
			return ca.Before(&cb)
		}
		return a.obj.GetName() < b.obj.GetName()
	})
	for len(kept) > max-1 && len(kept) > 0 {
		if err := k.deleteNamespace(ctx, gate, kept[0].obj.GetName()); err != nil {
			return err
		}
		kept = kept[1:]
	}
	return nil
}

// Cleanup removes leftovers of earlier runs of gate: namespaces labelled as
// the gate's that are not kept, or whose keep time has passed. It returns
// the names it deleted. Namespaces without the labels are never touched.
func (k *Cluster) Cleanup(ctx context.Context, gate string) ([]string, error) {
	all, err := k.namespaces(ctx, gate)
	if err != nil {
		return nil, err
	}
	var deleted []string
	warm := k.warm.name(gate)
	for _, ns := range all {
		if ns.kept && k.now().Before(ns.until) || ns.obj.GetName() == warm {
			continue
		}
		if err := k.deleteNamespace(ctx, gate, ns.obj.GetName()); err != nil {
			return deleted, fmt.Errorf("delete namespace %s: %w", ns.obj.GetName(), err)
		}
		deleted = append(deleted, ns.obj.GetName())
	}
	return deleted, nil
}
