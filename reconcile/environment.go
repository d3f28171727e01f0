package reconcile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/fluxcd/pkg/ssa"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/sluice-gitops/sluice/manifests"
)

// FieldManager is the server-side apply field owner of everything Sluice applies.
const FieldManager = "sluice"

// Defaults of the Kubernetes client: requests per second and burst (a
// controller's, as Flux's), and how many objects are applied at once.
const (
	DefaultQPS              = 50
	DefaultBurst            = 300
	DefaultApplyConcurrency = 10
)

// Annotation on a kept namespace saying when it may be removed.
const AnnotationKeepUntil = "sluice.dev/keep-until"

// Cluster tests candidates on a Kubernetes cluster.
type Cluster struct {
	client     client.Client
	mapper     meta.RESTMapper
	manager    *ssa.ResourceManager
	discovery  discovery.DiscoveryInterface
	kubeconfig string
	restConfig *rest.Config
	now        func() time.Time
	poll       time.Duration
}

// NewCluster connects to the cluster cfg points at. kubeconfig is the file
// given to host-side test commands (empty: one is written from cfg).
func NewCluster(cfg *rest.Config, kubeconfig string) (*Cluster, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.UserAgent == "" {
		cfg.UserAgent = "sluice"
	}
	// client-go's own default (5 requests/s, burst 10) makes a 200-object
	// candidate take minutes; these are a controller's defaults (Flux's).
	if cfg.QPS == 0 {
		cfg.QPS = DefaultQPS
	}
	if cfg.Burst == 0 {
		cfg.Burst = DefaultBurst
	}
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	mapper, err := apiutil.NewDynamicRESTMapper(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	c, err := client.New(cfg, client.Options{HTTPClient: httpClient, Mapper: mapper})
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	poller := polling.NewStatusPoller(c, mapper, polling.Options{})
	manager := ssa.NewResourceManager(c, poller, ssa.Owner{Field: FieldManager, Group: "sluice.dev"})
	manager.SetConcurrency(DefaultApplyConcurrency)
	return &Cluster{
		client:     c,
		mapper:     mapper,
		manager:    manager,
		discovery:  dc,
		kubeconfig: kubeconfig,
		restConfig: cfg,
		now:        time.Now,
		poll:       500 * time.Millisecond,
	}, nil
}

// TestSpec is one candidate to test.
type TestSpec struct {
	Gate          string
	Commit        string
	Namespace     string
	Objects       []*unstructured.Unstructured
	ClusterScoped manifests.ClusterScopedPolicy
	ApplyTimeout  time.Duration
	HealthTimeout time.Duration
	TestsTimeout  time.Duration
	KeepNamespace time.Duration
	Commands      []Command
	// ApplyConcurrency is how many objects are applied at once; 0 means
	// DefaultApplyConcurrency.
	ApplyConcurrency int
	// Until, when set to StepApply, StepHealth or StepTests, ends the test
	// after that step (a control run repeats only the step that failed).
	Until string
}

// Command is a host-side test command.
type Command struct {
	Name    string
	Args    []string
	Timeout time.Duration
}

// StepFunc is told when a step of the test ends.
type StepFunc func(step string, took time.Duration, detail string)

// Test runs one candidate: overlay, staged apply, health, test objects,
// host commands, then cleanup. A *Fault is the commit's fault; any other
// error is the infrastructure's. Durations are per step.
func (k *Cluster) Test(ctx context.Context, spec TestSpec, onStep StepFunc) (durations map[string]time.Duration, err error) {
	if onStep == nil {
		onStep = func(string, time.Duration, string) {}
	}
	durations = map[string]time.Duration{}
	step := func(name string, start time.Time, detail string) {
		d := time.Since(start)
		durations[name] = d
		onStep(name, d, detail)
	}

	env, err := manifests.Overlay(spec.Objects, manifests.OverlayOptions{
		Namespace:     spec.Namespace,
		Gate:          spec.Gate,
		Commit:        spec.Commit,
		IsNamespaced:  k.isNamespaced,
		ClusterScoped: spec.ClusterScoped,
		Now:           k.now,
	})
	if err != nil {
		var re *manifests.RenderError
		if errors.As(err, &re) {
			return durations, faultf(StepRender, "%v", err)
		}
		return durations, fmt.Errorf("overlay: %w", err)
	}

	start := time.Now()
	if err := k.createNamespace(ctx, env.Namespace, spec.ApplyTimeout); err != nil {
		return durations, err
	}
	crashPoint("namespace-created")
	passed := false
	defer func() {
		// Cleanup and keeping a failed namespace sit in one place.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if passed {
			if derr := k.deleteNamespace(cctx, spec.Gate, spec.Namespace); derr != nil && err == nil {
				err = fmt.Errorf("delete namespace %s: %w", spec.Namespace, derr)
			}
			return
		}
		if IsFault(err) && spec.KeepNamespace > 0 {
			_ = k.keepNamespace(cctx, spec.Namespace, k.now().Add(spec.KeepNamespace))
			return
		}
		_ = k.deleteNamespace(cctx, spec.Gate, spec.Namespace)
	}()

	if err := k.dryRunClusterScoped(ctx, env.ClusterScoped, spec); err != nil {
		return durations, err
	}
	applyCtx, cancel := context.WithTimeout(ctx, spec.ApplyTimeout)
	err = k.applyAll(applyCtx, env.Objects, spec.ApplyConcurrency)
	cancel()
	if err != nil {
		return durations, k.classify(ctx, StepApply, err)
	}
	step(StepApply, start, fmt.Sprintf("%d objects", len(env.Objects)))
	crashPoint("applied")
	if spec.Until == StepApply {
		passed = true
		return durations, nil
	}

	start = time.Now()
	set := object.UnstructuredSetToObjMetadataSet(env.Objects)
	if err := k.manager.WaitForSetWithContext(ctx, set, ssa.WaitOptions{Interval: k.poll, Timeout: spec.HealthTimeout}); err != nil {
		if ctx.Err() != nil {
			return durations, ctx.Err()
		}
		if uerr := k.reachable(ctx); uerr != nil {
			return durations, uerr
		}
		// The waiter's own error can be about itself (a rate limiter near
		// the deadline) rather than the objects: ask each object once more.
		notReady, serr := k.notCurrent(ctx, env.Objects)
		if serr != nil {
			return durations, serr
		}
		if len(notReady) > 0 {
			return durations, faultf(StepHealth, "not healthy within %s: %s", spec.HealthTimeout, strings.Join(notReady, "; "))
		}
	}
	step(StepHealth, start, fmt.Sprintf("%d objects current", len(set)))
	if spec.Until == StepHealth {
		passed = true
		return durations, nil
	}

	if len(env.Tests) > 0 {
		start = time.Now()
		if err := k.runTests(ctx, env.Tests, spec.TestsTimeout); err != nil {
			return durations, err
		}
		step(StepTests, start, fmt.Sprintf("%d passed", len(env.Tests)))
	}
	if len(spec.Commands) > 0 && spec.Until != StepTests {
		start = time.Now()
		if err := k.runCommands(ctx, spec); err != nil {
			return durations, err
		}
		step(StepCommands, start, fmt.Sprintf("%d passed", len(spec.Commands)))
	}
	passed = true
	return durations, nil
}

// isNamespaced asks the cluster's REST mapper.
func (k *Cluster) isNamespaced(gvk schema.GroupVersionKind) (bool, error) {
	m, err := k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		if meta.IsNoMatchError(err) {
			return false, err
		}
		return false, fmt.Errorf("discover API resources: %w", err)
	}
	return m.Scope.Name() == meta.RESTScopeNameNamespace, nil
}

func (k *Cluster) createNamespace(ctx context.Context, ns *unstructured.Unstructured, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	existing := &unstructured.Unstructured{}
	existing.SetGroupVersionKind(ns.GroupVersionKind())
	err := k.client.Get(ctx, client.ObjectKeyFromObject(ns), existing)
	switch {
	case err == nil:
		if !ownedBy(existing, ns.GetLabels()[manifests.LabelGate]) {
			return &StoppedError{Gate: ns.GetLabels()[manifests.LabelGate], Reason: fmt.Sprintf("namespace %s exists and is not Sluice's: refusing to use or delete it", ns.GetName())}
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

// classify tells a refusal of the commit's objects (a *Fault) from an
// outage (any other error). An answer from a reachable cluster that is
// neither is an *UnrecognisedError: only a control run can tell whose fault it is.
func (k *Cluster) classify(ctx context.Context, step string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return err
	}
	if IsFault(err) {
		return err
	}
	msg := trimAPIErr(err)
	switch {
	case meta.IsNoMatchError(err):
		return faultf(step, "%s", msg)
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err), apierrors.IsNotAcceptable(err),
		apierrors.IsUnsupportedMediaType(err), apierrors.IsMethodNotSupported(err),
		apierrors.IsRequestEntityTooLargeError(err), apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		return faultf(step, "rejected by the API server: %s", msg)
	case apierrors.IsInternalError(err) && schemaError(msg) != "":
		// Server-side apply answers a value of the wrong type, an unknown
		// field or a wrong shape with 500 and no reason; the message names
		// the field. It is the object's fault on every cluster.
		return faultf(step, "rejected by the API server: %s", schemaError(msg))
	case apierrors.IsForbidden(err):
		// Quota and Sluice's own RBAC are the infrastructure's fault;
		// an admission policy denying the object is the commit's.
		if strings.Contains(msg, "exceeded quota") || strings.Contains(msg, "cannot ") {
			return err
		}
		return faultf(step, "rejected by the API server: %s", msg)
	}
	if rerr := k.reachable(ctx); rerr != nil {
		return rerr
	}
	if answered(err) {
		return &UnrecognisedError{Step: step, Err: err}
	}
	return err
}

// typedPatch is how the API server words a schema error of server-side apply.
var typedPatch = regexp.MustCompile(`failed to create typed patch object \(([^)]*)\): (.+)`)

// schemaError returns "the object: field: problem" when msg is a schema
// error of server-side apply, with what Sluice said before it (the object).
func schemaError(msg string) string {
	m := typedPatch.FindStringSubmatchIndex(msg)
	if m == nil {
		return ""
	}
	before := strings.TrimSuffix(strings.TrimSpace(msg[:m[0]]), ":")
	before = strings.TrimSuffix(strings.TrimSuffix(before, " apply failed"), " dry-run failed")
	problem := msg[m[4]:m[5]]
	if before == "" {
		before = msg[m[2]:m[3]]
	}
	return fmt.Sprintf("%s: field %s (schema error: the object does not fit the kind's schema)", before, problem)
}

// answered reports whether err is an answer of the API server that is no
// sign of an outage or overload: not a timeout, throttling, unavailability,
// authentication, a missing object (the namespace may be going) or a
// broken connection.
func answered(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	switch {
	case apierrors.IsTimeout(err), apierrors.IsServerTimeout(err), apierrors.IsTooManyRequests(err),
		apierrors.IsServiceUnavailable(err), apierrors.IsUnauthorized(err), apierrors.IsNotFound(err),
		apierrors.IsGone(err), apierrors.IsResourceExpired(err), apierrors.IsUnexpectedServerError(err),
		apierrors.IsForbidden(err):
		return false
	}
	return true
}

// UnrecognisedError is an error answer of a cluster that is up, which
// Sluice cannot attribute by itself: the commit's objects or the cluster.
// The runner decides by a control run (see Runner.control).
type UnrecognisedError struct {
	Step string
	Err  error
}

func (e *UnrecognisedError) Error() string { return fmt.Sprintf("%s: %v", e.Step, e.Err) }
func (e *UnrecognisedError) Unwrap() error { return e.Err }

// reachable returns an infrastructure error when the API server does not answer.
func (k *Cluster) reachable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := k.discovery.RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
		return fmt.Errorf("API server unreachable: %w", err)
	}
	return nil
}

func describe(o *unstructured.Unstructured) string {
	if o.GetNamespace() != "" {
		return fmt.Sprintf("%s/%s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
	}
	return fmt.Sprintf("%s/%s", o.GetKind(), o.GetName())
}

func trimAPIErr(err error) string {
	return strings.TrimSpace(err.Error())
}

// notCurrent lists the objects that are not Current (kstatus), with their
// status and kstatus's message, e.g. "Deployment/z is InProgress: ...".
func (k *Cluster) notCurrent(ctx context.Context, objs []*unstructured.Unstructured) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var out []string
	for _, o := range objs {
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(o.GroupVersionKind())
		name := o.GetKind() + "/" + o.GetName()
		if err := k.client.Get(ctx, client.ObjectKeyFromObject(o), live); err != nil {
			if apierrors.IsNotFound(err) {
				out = append(out, name+" is missing")
				continue
			}
			return nil, fmt.Errorf("health of %s: %w", name, err)
		}
		res, err := status.Compute(live)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		if res.Status != status.CurrentStatus {
			msg := fmt.Sprintf("%s is %s", name, res.Status)
			if res.Message != "" {
				msg += ": " + res.Message
			}
			out = append(out, msg)
		}
	}
	return out, nil
}

// writeKubeconfig is used when the daemon got its cluster from somewhere
// other than a file (in-cluster): host commands still need one.
func writeKubeconfig(dir string, cfg *rest.Config) (string, error) {
	f, err := os.CreateTemp(dir, "kubeconfig-*")
	if err != nil {
		return "", err
	}
	defer f.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: %s\n", cfg.Host)
	if cfg.CAFile != "" {
		fmt.Fprintf(&b, "    certificate-authority: %s\n", cfg.CAFile)
	}
	fmt.Fprintf(&b, "users:\n- name: u\n  user:\n")
	if cfg.BearerTokenFile != "" {
		fmt.Fprintf(&b, "    tokenFile: %s\n", cfg.BearerTokenFile)
	}
	fmt.Fprintf(&b, "contexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n")
	if _, err := f.WriteString(b.String()); err != nil {
		return "", err
	}
	return f.Name(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
