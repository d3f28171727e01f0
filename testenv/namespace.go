package testenv

import (
	"context"
	"fmt"
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

func (k *Cluster) keepNamespace(ctx context.Context, name string, until time.Time) error {
	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, AnnotationKeepUntil, until.UTC().Format(time.RFC3339)))
	ns := &unstructured.Unstructured{}
	ns.SetGroupVersionKind(schema.GroupVersionKind{Version: "v1", Kind: "Namespace"})
	ns.SetName(name)
	return k.client.Patch(ctx, ns, client.RawPatch("application/merge-patch+json", patch))
}

// Cleanup removes leftovers of earlier runs of gate: namespaces labelled as
// the gate's that are not kept, or whose keep time has passed. It returns
// the names it deleted. Namespaces without the labels are never touched.
func (k *Cluster) Cleanup(ctx context.Context, gate string) ([]string, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(schema.GroupVersionKind{Version: "v1", Kind: "NamespaceList"})
	sel := client.MatchingLabels{manifests.LabelManagedBy: manifests.ManagedByValue, manifests.LabelGate: gate}
	if err := k.client.List(ctx, list, sel); err != nil {
		return nil, fmt.Errorf("list namespaces of gate %s: %w", gate, err)
	}
	var deleted []string
	for i := range list.Items {
		ns := &list.Items[i]
		if ns.GetDeletionTimestamp() != nil || !ownedBy(ns, gate) {
			continue
		}
		if until, err := time.Parse(time.RFC3339, ns.GetAnnotations()[AnnotationKeepUntil]); err == nil && k.now().Before(until) {
			continue
		}
		if err := k.deleteNamespace(ctx, gate, ns.GetName()); err != nil {
			return deleted, fmt.Errorf("delete namespace %s: %w", ns.GetName(), err)
		}
		deleted = append(deleted, ns.GetName())
	}
	return deleted, nil
}
