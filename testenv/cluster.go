package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/fluxcd/pkg/ssa"
	"k8s.io/apimachinery/pkg/api/meta"
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
	envRole    *environmentRole // see UseEnvironmentRole (rbac.go)
	starts     *startLimit      // see SetStartLimit (starts.go)
	warm       warmPool         // environments kept for TestSpec.Reuse (reuse.go)
}

// NewClient is the Kubernetes client Sluice uses everywhere (the test
// environments here, the previews): a controller's rate limits unless cfg
// sets its own, and a REST mapper that follows the cluster's kinds.
func NewClient(cfg *rest.Config) (client.Client, error) {
	_, _, _, c, err := connect(cfg)
	return c, err
}

func connect(cfg *rest.Config) (*rest.Config, *http.Client, meta.RESTMapper, client.Client, error) {
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
		return nil, nil, nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	mapper, err := apiutil.NewDynamicRESTMapper(cfg, httpClient)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	c, err := client.New(cfg, client.Options{HTTPClient: httpClient, Mapper: mapper})
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return cfg, httpClient, mapper, c, nil
}

// NewCluster connects to the cluster cfg points at. kubeconfig is the file
// given to host-side test commands (empty: one is written from cfg).
func NewCluster(cfg *rest.Config, kubeconfig string) (*Cluster, error) {
	cfg, httpClient, mapper, c, err := connect(cfg)
	if err != nil {
		return nil, err
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
	// KeepNamespaceMax is how many failed namespaces of the gate are kept
	// at most, the oldest removed first; 0 means DefaultKeepNamespaceMax.
	KeepNamespaceMax int
	Commands         []Command
	// ApplyConcurrency is how many objects are applied at once; 0 means
	// DefaultApplyConcurrency.
	ApplyConcurrency int
	// Priority orders the tests that wait for a start (SetStartLimit):
	// the lowest first. Sluice gives a candidate's place in its queue.
	Priority int
	// Reuse keeps a passed test's namespace for the gate's next candidate,
	// which is applied onto it as an update (only the objects that differ
	// are sent, the ones it no longer has are deleted) instead of into a
	// new namespace; see Test.
	Reuse bool
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
//
// With spec.Reuse the gate's last passed environment, when this Cluster
// kept one, is brought to the candidate's objects instead (reuse.go); a
// test that fails there is run again in a new namespace, and only that
// run's outcome counts, so what an earlier candidate left behind never
// rejects a commit.
func (k *Cluster) Test(ctx context.Context, spec TestSpec, onStep StepFunc) (map[string]time.Duration, error) {
	if onStep == nil {
		onStep = func(string, time.Duration, string) {}
	}
	if spec.Reuse && spec.Until == "" {
		w, err := k.claim(ctx, spec.Gate)
		if err != nil {
			return map[string]time.Duration{}, err
		}
		if w != nil {
			start := time.Now()
			durations, err := k.test(ctx, spec, onStep, w)
			if err == nil || ctx.Err() != nil || !(IsFault(err) || isUnrecognised(err)) {
				return durations, err
			}
			onStep(StepReused, time.Since(start), fmt.Sprintf("failed in the reused namespace %s (%v); testing again in a new namespace", w.namespace, err))
		}
	}
	return k.test(ctx, spec, onStep, nil)
}

// test is one run of Test: in a new namespace, or in w when w is not nil.
func (k *Cluster) test(ctx context.Context, spec TestSpec, onStep StepFunc, w *warmEnv) (durations map[string]time.Duration, err error) {
	durations = map[string]time.Duration{}
	handed := false // whether the cleanup below took w over
	if w != nil {
		spec.Namespace = w.namespace
		defer func() {
			// Nothing was changed in it yet: it stays the gate's.
			if !handed && !k.warm.putBack(spec.Gate, w) {
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
				defer cancel()
				_ = k.deleteNamespace(cctx, spec.Gate, w.namespace)
			}
		}()
	}
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
		// A kept environment is updated from candidate to candidate.
		CommitOnNamespaceOnly: spec.Reuse,
	})
	if err != nil {
		var re *manifests.RenderError
		if errors.As(err, &re) {
			return durations, faultf(StepOverlay, "%v", err)
		}
		return durations, fmt.Errorf("overlay: %w", err)
	}
	if w != nil && w.createdAt != "" {
		a := env.Namespace.GetAnnotations()
		a[manifests.AnnotationCreatedAt] = w.createdAt
		env.Namespace.SetAnnotations(a)
	}

	start := time.Now()
	release, err := k.starts.acquire(ctx, spec.Priority)
	if err != nil {
		return durations, err
	}
	defer release()
	if k.starts != nil && k.starts.n > 0 {
		step(StepWait, start, "")
		start = time.Now()
	}
	// Kept namespaces whose time is up go before each test, not only at a
	// pass's start: their pods hold capacity the tests need.
	if err := k.expire(ctx, spec.Gate); err != nil {
		return durations, err
	}
	if w != nil {
		err = k.relabelNamespace(ctx, env.Namespace, spec.ApplyTimeout)
	} else {
		err = k.createNamespace(ctx, env.Namespace, spec.ApplyTimeout)
	}
	if err != nil {
		return durations, err
	}
	onStep(StepNamespace, time.Since(start), spec.Namespace)
	passed := false
	handed = true
	defer func() {
		// Cleanup and keeping a failed namespace sit in one place.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if passed && spec.Reuse && spec.Until == "" {
			if k.keepWarm(cctx, spec.Gate, env.Namespace, env) == nil {
				return
			}
		}
		if passed {
			if derr := k.deleteNamespace(cctx, spec.Gate, spec.Namespace); derr != nil && err == nil {
				err = fmt.Errorf("delete namespace %s: %w", spec.Namespace, derr)
			}
			return
		}
		if w != nil && ctx.Err() == nil && (IsFault(err) || isUnrecognised(err)) {
			// Test runs this candidate again in a new namespace, which
			// is the one to keep for people to look at; this one goes
			// back to the last passed candidate, for the next.
			if k.restore(cctx, spec, w, env) != nil {
				_ = k.deleteNamespace(cctx, spec.Gate, spec.Namespace)
			}
			return
		}
		if IsFault(err) && spec.KeepNamespace > 0 {
			if k.keepNamespace(cctx, spec.Namespace, k.now().Add(spec.KeepNamespace)) == nil {
				_ = k.trimKept(cctx, spec.Gate, spec.Namespace, keepMax(spec.KeepNamespaceMax))
			}
			return
		}
		_ = k.deleteNamespace(cctx, spec.Gate, spec.Namespace)
	}()

	if err := k.dryRunClusterScoped(ctx, env.ClusterScoped, spec); err != nil {
		return durations, err
	}
	applyCtx, cancel := context.WithTimeout(ctx, spec.ApplyTimeout)
	detail := fmt.Sprintf("%d objects", len(env.Objects))
	if w != nil {
		var applied, deleted int
		applied, deleted, err = k.update(applyCtx, spec.Gate, w, env.Objects, spec.ApplyConcurrency)
		detail = fmt.Sprintf("reused: %d of %d objects changed, %d removed", applied, len(env.Objects), deleted)
	} else {
		err = k.applyAll(applyCtx, env.Objects, spec.ApplyConcurrency)
	}
	cancel()
	if err != nil {
		return durations, k.classify(ctx, StepApply, err)
	}
	step(StepApply, start, detail)
	if spec.Until == StepApply {
		passed = true
		return durations, nil
	}

	start = time.Now()
	set := object.UnstructuredSetToObjMetadataSet(env.Objects)
	interval := k.poll
	if w != nil {
		// An update rolls only what changed, often in well under a
		// second: a full interval would be most of the wait.
		interval = min(k.poll, reusedPoll)
	}
	if err := k.manager.WaitForSetWithContext(ctx, set, ssa.WaitOptions{Interval: interval, Timeout: spec.HealthTimeout}); err != nil {
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
			msg := fmt.Sprintf("not healthy within %s: %s", spec.HealthTimeout, strings.Join(notReady, "; "))
			if uerr := k.unplaced(ctx, spec.Namespace, StepHealth, msg); uerr != nil {
				return durations, uerr
			}
			return durations, faultf(StepHealth, "%s", msg)
		}
	}
	step(StepHealth, start, fmt.Sprintf("%d objects current", len(set)))
	// The environment is up: the next one may start while this one's
	// tests run.
	release()
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

func keepMax(n int) int {
	if n <= 0 {
		return DefaultKeepNamespaceMax
	}
	return n
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
