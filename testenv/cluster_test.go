package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/sluice-gitops/sluice/manifests"
	"github.com/sluice-gitops/sluice/test/cluster"
)

// TestMain starts the package's test control plane (test/cluster).
func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard())
	os.Exit(cluster.Main(m))
}

func newTestCluster(t *testing.T) (*Cluster, kubernetes.Interface) {
	t.Helper()
	c := cluster.Require(t)
	k, err := NewCluster(c.Config, c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	k.poll = 100 * time.Millisecond
	return k, c.Client(t)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func objects(t *testing.T, docs ...string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, doc := range docs {
		m := map[string]any{}
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
	return out
}

func deployment(image string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: %q}]
`, image)
}

// spec is a test of one candidate of gate in the commit's namespace.
func spec(gate, commit string, objs []*unstructured.Unstructured) TestSpec {
	return TestSpec{
		Gate: gate, Commit: commit, Namespace: manifests.TestNamespace(gate, commit),
		Objects:      objs,
		ApplyTimeout: 30 * time.Second, HealthTimeout: 5 * time.Second, TestsTimeout: 30 * time.Second,
	}
}

// keptOf lists gate's own namespaces that are kept and not being deleted, sorted.
func keptOf(t *testing.T, client kubernetes.Interface, gate string) []string {
	t.Helper()
	list, err := client.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{LabelSelector: manifests.LabelManagedBy + "=" + manifests.ManagedByValue + "," + manifests.LabelGate + "=" + gate})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ns := range list.Items {
		if ns.DeletionTimestamp == nil && ns.Annotations[AnnotationKeepUntil] != "" {
			out = append(out, ns.Name)
		}
	}
	sort.Strings(out)
	return out
}

// A long pass fails many candidates: the failed namespaces a gate keeps
// are bounded (the oldest go first), and a kept namespace whose time is up
// goes before the next test, not only at the next pass's start. A
// look-alike namespace without Sluice's labels is never touched.
func TestKeptNamespacesAreBoundedAndExpire(t *testing.T) {
	k, client := newTestCluster(t)
	ctx := context.Background()
	gate := "keep-" + randHex(3)
	// A ConfigMap of the wrong shape: the API server refuses it at once.
	broken := objects(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: 1}\n")
	good := objects(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: \"1\"}\n")

	lookalike := manifests.TestNamespace(gate, "f00d000")
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:        lookalike,
		Labels:      map[string]string{manifests.LabelGate: gate},
		Annotations: map[string]string{AnnotationKeepUntil: "2000-01-01T00:00:00Z"},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.CoreV1().Namespaces().Delete(context.Background(), lookalike, metav1.DeleteOptions{})
	})

	var failed []string
	for i := range 5 {
		s := spec(gate, fmt.Sprintf("%07x", i+1), broken)
		s.KeepNamespace = time.Hour
		if _, err := k.Test(ctx, s, nil); !IsFault(err) {
			t.Fatalf("test %d: %v, want the commit's fault", i, err)
		}
		failed = append(failed, s.Namespace)
		want := failed[max(0, len(failed)-DefaultKeepNamespaceMax):]
		if got := keptOf(t, client, gate); !slices.Equal(got, want) {
			t.Errorf("after %d failures kept %v, want the newest %d: %v", i+1, got, DefaultKeepNamespaceMax, want)
		}
	}
	s := spec(gate, "00000aa", broken)
	s.KeepNamespace, s.KeepNamespaceMax = time.Hour, 1
	if _, err := k.Test(ctx, s, nil); !IsFault(err) {
		t.Fatalf("%v, want the commit's fault", err)
	}
	if got := keptOf(t, client, gate); !slices.Equal(got, []string{s.Namespace}) {
		t.Errorf("with KeepNamespaceMax 1 kept %v, want only %s", got, s.Namespace)
	}

	// Two hours later, within the same pass (no Cleanup), the next test
	// removes the kept namespace whose hour is over.
	k.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if _, err := k.Test(ctx, spec(gate, "00000bb", good), nil); err != nil {
		t.Fatal(err)
	}
	if got := keptOf(t, client, gate); len(got) != 0 {
		t.Errorf("kept after their time: %v", got)
	}
	ns, err := client.CoreV1().Namespaces().Get(ctx, lookalike, metav1.GetOptions{})
	if err != nil || ns.DeletionTimestamp != nil {
		t.Errorf("the look-alike namespace without Sluice's labels was touched: %v", err)
	}
}

// fillNodes sets every node's pod capacity to the pods it runs now, so that
// no new pod fits, and gives it back when the test ends.
func fillNodes(t *testing.T, client kubernetes.Interface) {
	t.Helper()
	ctx := context.Background()
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	setPods := func(name, pods string) error {
		patch := fmt.Sprintf(`{"status":{"capacity":{"pods":%q},"allocatable":{"pods":%q}}}`, pods, pods)
		_, err := client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
		return err
	}
	for _, n := range nodes.Items {
		was := n.Status.Allocatable.Pods().String()
		pods, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + n.Name})
		if err != nil {
			t.Fatal(err)
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				running++
			}
		}
		if err := setPods(n.Name, fmt.Sprint(running)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := setPods(n.Name, was); err != nil {
				t.Errorf("give node %s its capacity back: %v", n.Name, err)
			}
		})
	}
}

// A health failure whose pods the scheduler cannot place (the cluster is
// full, e.g. of kept namespaces' pods) is no proof against the commit: it
// is an *UnrecognisedError, for a control run to judge. A pod that is
// placed and never turns ready is still the commit's fault.
func TestUnschedulablePodsAreNotTheCommitsFault(t *testing.T) {
	tests := []struct {
		name      string
		full      bool
		image     string
		wantFault bool
		want      string
	}{
		{name: "the cluster is full", full: true, image: "example.com/web:v1", want: "Too many pods"},
		{name: "a pod that never turns ready", image: "example.com/web:v1-never-ready", wantFault: true, want: "Deployment/web"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, client := newTestCluster(t)
			if tt.full {
				fillNodes(t, client)
			}
			s := spec("full-"+randHex(3), randHex(20), objects(t, deployment(tt.image)))
			_, err := k.Test(context.Background(), s, nil)
			var unrecognised *UnrecognisedError
			switch {
			case tt.wantFault && !IsFault(err):
				t.Fatalf("Test = %v (%T), want the commit's fault", err, err)
			case !tt.wantFault && (!errors.As(err, &unrecognised) || unrecognised.Step != StepHealth):
				t.Fatalf("Test = %v (%T), want an *UnrecognisedError of the health step", err, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Test = %v, want it to say %q", err, tt.want)
			}
			if _, gerr := client.CoreV1().Namespaces().Get(context.Background(), s.Namespace, metav1.GetOptions{}); gerr == nil {
				// Not kept: it must be going.
				ns, _ := client.CoreV1().Namespaces().Get(context.Background(), s.Namespace, metav1.GetOptions{})
				if ns != nil && ns.DeletionTimestamp == nil {
					t.Errorf("namespace %s left behind", s.Namespace)
				}
			} else if !apierrors.IsNotFound(gerr) {
				t.Fatal(gerr)
			}
		})
	}
}

// With a start limit of one, environments come up one at a time on the
// real cluster, the lowest priority first among those waiting: none
// creates its namespace before the one ahead of it is healthy.
func TestStartLimitOnTheCluster(t *testing.T) {
	k, _ := newTestCluster(t)
	k.SetStartLimit(1)
	gate := "starts-" + randHex(3)
	t.Cleanup(func() { _, _ = k.Cleanup(context.Background(), gate) })

	var (
		mu  sync.Mutex
		log []string
	)
	run := func(name string, priority int, done chan<- error) {
		s := spec(gate, randHex(20), objects(t, deployment("web:"+name)))
		s.Priority = priority
		s.HealthTimeout = time.Minute
		_, err := k.Test(context.Background(), s, func(step string, _ time.Duration, _ string) {
			mu.Lock()
			defer mu.Unlock()
			log = append(log, name+" "+step)
		})
		done <- err
	}
	done := make(chan error, 3)
	go run("c", 2, done)
	for {
		mu.Lock()
		started := len(log) > 0
		mu.Unlock()
		if started {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	waiting := func(n int) {
		for {
			k.starts.mu.Lock()
			got := len(k.starts.waiting)
			k.starts.mu.Unlock()
			if got >= n {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	go run("b", 1, done)
	waiting(1)
	go run("a", 0, done)
	waiting(2)
	for range 3 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	var order, up []string
	inside := ""
	for _, e := range log {
		name, step, _ := strings.Cut(e, " ")
		switch step {
		case StepWait:
			if inside != "" {
				t.Fatalf("%s started while %s was starting: %v", name, inside, log)
			}
			inside = name
			order = append(order, name)
		case StepHealth:
			inside = ""
			up = append(up, name)
		}
	}
	if want := []string{"c", "a", "b"}; !slices.Equal(order, want) || !slices.Equal(up, want) {
		t.Fatalf("started %v, healthy %v; want %v for both (log %v)", order, up, want, log)
	}
}
