package testenv

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/fluxcd/pkg/ssa"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-gitops/sluice/manifests"
)

// StepReused is reported (to StepFunc only) when a candidate's test in a
// reused environment failed and the candidate is tested again in a new
// namespace; its detail is the failure.
const StepReused = "reused"

// reusedPoll is how often a reused environment's health is polled (each
// poll lists the namespace's objects of each kind, and a Deployment's
// ReplicaSets and Pods).
var reusedPoll = 200 * time.Millisecond

// warmEnv is a gate's environment kept for the next candidate
// (TestSpec.Reuse): the namespace of the gate's last passed test and
// exactly what Sluice applied into it. It lives only in this process: a
// restarted Sluice keeps nothing, and its Cleanup removes the namespace.
type warmEnv struct {
	namespace string
	uid       types.UID
	commit    string                                // the candidate in it, its namespace's LabelCommit
	createdAt string                                // the namespace's AnnotationCreatedAt, kept across candidates
	objects   map[string]*unstructured.Unstructured // objKey → the object as applied
	tests     []*unstructured.Unstructured          // the last candidate's test Jobs and Pods
}

// warmPool holds at most one environment per gate.
type warmPool struct {
	mu   sync.Mutex
	envs map[string]*warmEnv
}

// take removes and returns gate's environment (nil when none).
func (p *warmPool) take(gate string) *warmEnv {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.envs[gate]
	delete(p.envs, gate)
	return w
}

// putBack keeps w as gate's environment unless the gate has one (a test
// of a speculative window passed meanwhile), and reports whether it did.
func (p *warmPool) putBack(gate string, w *warmEnv) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.envs[gate] != nil {
		return false
	}
	if p.envs == nil {
		p.envs = map[string]*warmEnv{}
	}
	p.envs[gate] = w
	return true
}

// put keeps w as gate's environment and returns the one it replaces
// (tests of a speculative window pass in any order: the newest pass wins).
func (p *warmPool) put(gate string, w *warmEnv) *warmEnv {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.envs == nil {
		p.envs = map[string]*warmEnv{}
	}
	old := p.envs[gate]
	p.envs[gate] = w
	return old
}

// name is the namespace kept for gate, "" when none.
func (p *warmPool) name(gate string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w := p.envs[gate]; w != nil {
		return w.namespace
	}
	return ""
}

// Kept returns the namespace this Cluster keeps for gate's next candidate
// (TestSpec.Reuse), "" when none.
func (k *Cluster) Kept(gate string) string { return k.warm.name(gate) }

// Release removes the environment kept for gate's next candidate, if any.
// A daemon that stops, or a `run --once` that ends, calls it: a kept
// environment lives only as long as the process that applied it.
func (k *Cluster) Release(ctx context.Context, gate string) error {
	w := k.warm.take(gate)
	if w == nil {
		return nil
	}
	if err := k.deleteNamespace(ctx, gate, w.namespace); err != nil {
		return fmt.Errorf("delete namespace %s: %w", w.namespace, err)
	}
	return nil
}

// claim takes gate's kept environment when it is still the namespace this
// process applied (same UID, labelled as the gate's, not being deleted);
// anything else is dropped, and the candidate gets a new namespace.
func (k *Cluster) claim(ctx context.Context, gate string) (*warmEnv, error) {
	w := k.warm.take(gate)
	if w == nil {
		return nil, nil
	}
	ns := &unstructured.Unstructured{}
	ns.SetGroupVersionKind(schema.GroupVersionKind{Version: "v1", Kind: "Namespace"})
	err := k.client.Get(ctx, client.ObjectKey{Name: w.namespace}, ns)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		k.warm.putBack(gate, w) // not this candidate's to drop
		return nil, fmt.Errorf("get namespace %s: %w", w.namespace, err)
	case ns.GetUID() != w.uid || ns.GetDeletionTimestamp() != nil || !ownedBy(ns, gate):
		return nil, nil
	}
	return w, nil
}

// objKey names an object within one namespace.
func objKey(o *unstructured.Unstructured) string {
	gvk := o.GroupVersionKind()
	return gvk.Group + "/" + gvk.Kind + "/" + o.GetName()
}

// update brings a kept environment to a candidate's objects: the last
// candidate's tests go, the objects that differ from what was applied are
// applied (the others are not sent at all), and the objects the candidate
// no longer has are deleted. It returns how many were applied and deleted.
func (k *Cluster) update(ctx context.Context, gate string, w *warmEnv, objs []*unstructured.Unstructured, n int) (applied, deleted int, err error) {
	for _, t := range w.tests {
		if err := k.deleteOwned(ctx, t, gate, true); err != nil {
			return 0, 0, fmt.Errorf("remove the last candidate's test %s: %w", describe(t), err)
		}
	}
	var changed []*unstructured.Unstructured
	want := map[string]bool{}
	for _, o := range objs {
		key := objKey(o)
		want[key] = true
		if prev, ok := w.objects[key]; ok && equality.Semantic.DeepEqual(prev.Object, o.Object) {
			continue
		}
		changed = append(changed, o)
	}
	if err := k.applyAll(ctx, changed, n); err != nil {
		return 0, 0, err
	}
	var gone []string
	for key := range w.objects {
		if !want[key] {
			gone = append(gone, key)
		}
	}
	sort.Strings(gone)
	for _, key := range gone {
		if err := k.deleteOwned(ctx, w.objects[key], gate, false); err != nil {
			return len(changed), 0, fmt.Errorf("remove %s, which the candidate no longer has: %w", describe(w.objects[key]), err)
		}
	}
	return len(changed), len(gone), nil
}

// deleteOwned deletes the live object o names when it carries Sluice's
// labels for gate (nothing else is ever deleted), and with wait until it
// is gone (a test Job of the same name is applied next).
func (k *Cluster) deleteOwned(ctx context.Context, o *unstructured.Unstructured, gate string, wait bool) error {
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(o.GroupVersionKind())
	if err := k.client.Get(ctx, client.ObjectKeyFromObject(o), live); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	if !ownedBy(live, gate) {
		return nil
	}
	uid := live.GetUID()
	err := k.client.Delete(ctx, live, client.Preconditions{UID: &uid}, client.PropagationPolicy(metav1.DeletePropagationBackground))
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if wait {
		return k.waitGone(ctx, live)
	}
	return nil
}

// keepWarm records a passed test's environment as gate's next candidate's,
// and removes the one it replaces.
func (k *Cluster) keepWarm(ctx context.Context, gate string, ns *unstructured.Unstructured, env *manifests.TestEnvironment) error {
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(ns.GroupVersionKind())
	if err := k.client.Get(ctx, client.ObjectKeyFromObject(ns), live); err != nil {
		return err
	}
	w := &warmEnv{
		namespace: ns.GetName(),
		uid:       live.GetUID(),
		commit:    ns.GetLabels()[manifests.LabelCommit],
		createdAt: live.GetAnnotations()[manifests.AnnotationCreatedAt],
		objects:   make(map[string]*unstructured.Unstructured, len(env.Objects)),
		tests:     env.Tests,
	}
	for _, o := range env.Objects {
		w.objects[objKey(o)] = o
	}
	if old := k.warm.put(gate, w); old != nil && old.namespace != w.namespace {
		return k.deleteNamespace(ctx, gate, old.namespace)
	}
	return nil
}

// restore brings a reused namespace in which a candidate failed back to
// w, the last passed candidate it held: the failed candidate's tests go,
// its objects are replaced by w's (the ones it added deleted), the
// namespace is labelled with w's commit again, and once every object is
// healthy, w is the gate's kept environment again. Anything short of that
// is an error, and the caller removes the namespace.
func (k *Cluster) restore(ctx context.Context, spec TestSpec, w *warmEnv, failed *manifests.TestEnvironment) error {
	now := &warmEnv{namespace: w.namespace, objects: map[string]*unstructured.Unstructured{}, tests: failed.Tests}
	for _, o := range failed.Objects {
		now.objects[objKey(o)] = o
	}
	keys := make([]string, 0, len(w.objects))
	for key := range w.objects {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	objs := make([]*unstructured.Unstructured, len(keys))
	for i, key := range keys {
		objs[i] = w.objects[key]
	}
	ns := failed.Namespace.DeepCopy()
	l := ns.GetLabels()
	l[manifests.LabelCommit] = w.commit
	ns.SetLabels(l)
	if err := k.relabelNamespace(ctx, ns, spec.ApplyTimeout); err != nil {
		return err
	}
	if _, _, err := k.update(ctx, spec.Gate, now, objs, spec.ApplyConcurrency); err != nil {
		return err
	}
	set := object.UnstructuredSetToObjMetadataSet(objs)
	if err := k.manager.WaitForSetWithContext(ctx, set, ssa.WaitOptions{Interval: min(k.poll, reusedPoll), Timeout: spec.HealthTimeout}); err != nil {
		return err
	}
	if !k.warm.putBack(spec.Gate, &warmEnv{namespace: w.namespace, uid: w.uid, commit: w.commit, createdAt: w.createdAt, objects: w.objects}) {
		return errors.New("the gate keeps another environment")
	}
	return nil
}
