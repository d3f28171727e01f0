package testenv

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-gitops/sluice/manifests"
)

// dryRunClusterScoped validates cluster-scoped objects with a server-side
// dry-run; they are never applied, so the environment being tested cannot
// change anything outside its namespace.
func (k *Cluster) dryRunClusterScoped(ctx context.Context, objs []*unstructured.Unstructured, spec TestSpec) error {
	if spec.ClusterScoped == manifests.ClusterScopedIgnore {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, spec.ApplyTimeout)
	defer cancel()
	err := each(ctx, objs, concurrency(spec.ApplyConcurrency), func(ctx context.Context, o *unstructured.Unstructured) error {
		if err := k.client.Patch(ctx, o.DeepCopy(), client.Apply, client.DryRunAll, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
			return fmt.Errorf("%s dry-run failed: %w", describe(o), err)
		}
		return nil
	})
	return k.classify(ctx, StepApply, err)
}

// each calls fn for every object, n at a time, and returns the first error
// in the order of objs. After an error no more calls start; the ones under
// way finish (cancelling them only adds client-go's complaints to the log).
func each(ctx context.Context, objs []*unstructured.Unstructured, n int, fn func(context.Context, *unstructured.Unstructured) error) error {
	errs := make([]error, len(objs))
	slots := make(chan struct{}, n)
	var failed atomic.Bool
	var wg sync.WaitGroup
	for i, o := range objs {
		slots <- struct{}{}
		if failed.Load() || ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if errs[i] = fn(ctx, o); errs[i] != nil {
				failed.Store(true)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

func concurrency(n int) int {
	if n <= 0 {
		return DefaultApplyConcurrency
	}
	return n
}

// workloads make pods; they are applied after everything else of the
// namespace (service accounts, config, quotas, limit ranges), as a staged
// apply would.
var workloads = map[schema.GroupKind]bool{
	{Group: "", Kind: "Pod"}:                   true,
	{Group: "", Kind: "ReplicationController"}: true,
	{Group: "apps", Kind: "Deployment"}:        true,
	{Group: "apps", Kind: "StatefulSet"}:       true,
	{Group: "apps", Kind: "DaemonSet"}:         true,
	{Group: "apps", Kind: "ReplicaSet"}:        true,
	{Group: "batch", Kind: "Job"}:              true,
	{Group: "batch", Kind: "CronJob"}:          true,
}

// applyAll server-side applies the objects of a test namespace, n at a time:
// one request per object. The namespace was just made, so there is nothing
// to compare with (no get, no dry-run: the apply validates the object
// itself). An object the cluster serves as cluster-scoped is never applied,
// whatever the overlay decided: it would be created cluster-wide.
func (k *Cluster) applyAll(ctx context.Context, objs []*unstructured.Unstructured, n int) error {
	var first, then []*unstructured.Unstructured
	for _, o := range objs {
		namespaced, err := k.isNamespaced(o.GroupVersionKind())
		if err != nil && !meta.IsNoMatchError(err) {
			return err
		}
		if err == nil && !namespaced {
			return faultf(StepApply, "%s is cluster-scoped on this cluster: it is never applied", describe(o))
		}
		if workloads[o.GroupVersionKind().GroupKind()] {
			then = append(then, o)
		} else {
			first = append(first, o)
		}
	}
	for _, wave := range [][]*unstructured.Unstructured{first, then} {
		err := each(ctx, wave, concurrency(n), func(ctx context.Context, o *unstructured.Unstructured) error {
			if err := k.client.Patch(ctx, o.DeepCopy(), client.Apply, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
				return fmt.Errorf("%s apply failed: %w", describe(o), err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func describe(o *unstructured.Unstructured) string {
	if o.GetNamespace() != "" {
		return fmt.Sprintf("%s/%s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
	}
	return fmt.Sprintf("%s/%s", o.GetKind(), o.GetName())
}
