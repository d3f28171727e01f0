package testenv

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sluice-gitops/sluice/manifests"
)

// stepLog records a test's steps as "step: detail".
type stepLog struct {
	mu    sync.Mutex
	steps []string
}

func (l *stepLog) on(step string, _ time.Duration, detail string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.steps = append(l.steps, step+": "+detail)
}

func (l *stepLog) find(step string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.steps {
		if d, ok := strings.CutPrefix(s, step+": "); ok {
			return d, true
		}
	}
	return "", false
}

// reuseSpec is a candidate of gate with Reuse: a Deployment web of image,
// a Service per name in services, and a test Job.
func reuseSpec(t *testing.T, gate, image string, services ...string) TestSpec {
	t.Helper()
	docs := []string{deployment(image), `apiVersion: batch/v1
kind: Job
metadata: {name: check, labels: {sluice.dev/test: "true"}}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{name: check, image: registry.example/check:v1}]
`}
	for _, s := range services {
		docs = append(docs, fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: %s}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n", s))
	}
	s := spec(gate, randHex(20), objects(t, docs...))
	s.Reuse = true
	return s
}

func namespaceOf(t *testing.T, client kubernetes.Interface, name string) (labels map[string]string, exists bool) {
	t.Helper()
	ns, err := client.CoreV1().Namespaces().Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || err == nil && ns.DeletionTimestamp != nil {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return ns.Labels, true
}

// A gate with Reuse keeps its passed candidate's namespace and brings the
// next candidate into it as an update: only what changed is applied, what
// the candidate dropped is deleted, the last candidate's test Job is
// replaced, and the namespace is labelled with the candidate now in it. A
// failure there is tested again in a new namespace, so a leftover (here a
// Service someone deleted by hand) never rejects a commit, while a real
// failure still fails and the kept namespace goes back to the last passed
// candidate. Cleanup leaves the kept namespace alone; Release removes it.
func TestReuseEnvironment(t *testing.T) {
	k, client := newTestCluster(t)
	ctx := context.Background()
	gate := "reuse-" + randHex(3)
	t.Cleanup(func() {
		_ = k.Release(context.Background(), gate)
		_, _ = k.Cleanup(context.Background(), gate)
	})

	// A: a new namespace, kept because it passed.
	a := reuseSpec(t, gate, "web:v1", "web", "old")
	if _, err := k.Test(ctx, a, nil); err != nil {
		t.Fatalf("A: %v", err)
	}
	warm := k.Kept(gate)
	if warm != a.Namespace {
		t.Fatalf("kept %q after A passed, want A's namespace %s", warm, a.Namespace)
	}
	if deleted, err := k.Cleanup(ctx, gate); err != nil || len(deleted) != 0 {
		t.Fatalf("Cleanup deleted %v (%v); the kept namespace must stay", deleted, err)
	}
	// A candidate that cannot be put into a namespace at all (two
	// Services web from two namespaces) changes nothing: A's stays kept.
	collide := reuseSpec(t, gate, "web:v1", "web")
	collide.Objects = append(collide.Objects, objects(t, "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: other}\nspec:\n  ports: [{port: 80}]\n")...)
	if _, err := k.Test(ctx, collide, nil); !IsFault(err) || !strings.Contains(err.Error(), "collides") {
		t.Fatalf("colliding candidate: %v, want an overlay fault", err)
	}
	if k.Kept(gate) != warm {
		t.Fatalf("kept %q after a candidate that never reached the cluster, want %s", k.Kept(gate), warm)
	}
	webUID := func() string {
		svc, err := client.CoreV1().Services(warm).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(svc.UID)
	}
	before := webUID()

	// B: a new image, Service old dropped, Service new added.
	b := reuseSpec(t, gate, "web:v2", "web", "new")
	var log stepLog
	if _, err := k.Test(ctx, b, log.on); err != nil {
		t.Fatalf("B: %v (steps %v)", err, log.steps)
	}
	if ns, _ := log.find(StepNamespace); ns != warm {
		t.Fatalf("B was tested in %q, want the kept %s (steps %v)", ns, warm, log.steps)
	}
	if d, _ := log.find(StepApply); d != "reused: 2 of 3 objects changed, 1 removed" {
		t.Fatalf("apply of B: %q, want the Deployment and Service new applied, Service old removed", d)
	}
	if _, err := client.CoreV1().Services(warm).Get(ctx, "old", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("Service old after B: %v, want it deleted", err)
	}
	if _, err := client.CoreV1().Services(warm).Get(ctx, "new", metav1.GetOptions{}); err != nil {
		t.Fatalf("Service new after B: %v", err)
	}
	if webUID() != before {
		t.Fatal("Service web was recreated; an unchanged object must be left as it is")
	}
	d, err := client.AppsV1().Deployments(warm).Get(ctx, "web", metav1.GetOptions{})
	if err != nil || d.Spec.Template.Spec.Containers[0].Image != "web:v2" {
		t.Fatalf("Deployment web after B: %v %v", d, err)
	}
	if _, ok := d.Spec.Template.Labels[manifests.LabelCommit]; ok {
		t.Fatal("the pod template carries the commit: every candidate would roll every workload")
	}
	job, err := client.BatchV1().Jobs(warm).Get(ctx, "check", metav1.GetOptions{})
	if err != nil || job.Labels[manifests.LabelCommit] != b.Commit {
		t.Fatalf("test Job after B: %v, labels %v; want B's", err, job.Labels)
	}
	if l, _ := namespaceOf(t, client, warm); l[manifests.LabelCommit] != b.Commit {
		t.Fatalf("namespace labels %v, want commit %s", l, b.Commit)
	}
	if _, exists := namespaceOf(t, client, b.Namespace); exists {
		t.Fatalf("B's own namespace %s was made", b.Namespace)
	}

	// Someone deletes Service web in the kept namespace. C changes only
	// the image: in the kept namespace web is missing and C is not healthy;
	// tested again in a new namespace, it passes, and that counts.
	if err := client.CoreV1().Services(warm).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c := reuseSpec(t, gate, "web:v3", "web", "new")
	log = stepLog{}
	if _, err := k.Test(ctx, c, log.on); err != nil {
		t.Fatalf("C: %v (steps %v); a leftover of the kept namespace must not fail it", err, log.steps)
	}
	if d, ok := log.find(StepReused); !ok || !strings.Contains(d, "Service/web") {
		t.Fatalf("reused step %q, want the missing Service named (steps %v)", d, log.steps)
	}
	if k.Kept(gate) != c.Namespace {
		t.Fatalf("kept %q after C passed in its own namespace, want %s", k.Kept(gate), c.Namespace)
	}
	if _, exists := namespaceOf(t, client, warm); exists {
		t.Fatalf("the failed kept namespace %s is still there (KeepNamespace 0)", warm)
	}

	// D never becomes ready: it fails in the kept namespace, which goes
	// back to C (the image, the commit), and fails again in a new one.
	dspec := reuseSpec(t, gate, "web:v4-never-ready", "web", "new")
	log = stepLog{}
	_, err = k.Test(ctx, dspec, log.on)
	if !IsFault(err) || !strings.Contains(err.Error(), "Deployment/web") {
		t.Fatalf("D: %v, want a health fault naming Deployment/web", err)
	}
	if _, ok := log.find(StepReused); !ok {
		t.Fatalf("D was not tested again in a new namespace (steps %v)", log.steps)
	}
	if k.Kept(gate) != c.Namespace {
		t.Fatalf("kept %q after D failed, want C's namespace %s back", k.Kept(gate), c.Namespace)
	}
	if l, _ := namespaceOf(t, client, c.Namespace); l[manifests.LabelCommit] != c.Commit {
		t.Fatalf("C's namespace labels %v after D, want C's commit again", l)
	}
	if d, err := client.AppsV1().Deployments(c.Namespace).Get(ctx, "web", metav1.GetOptions{}); err != nil || d.Spec.Template.Spec.Containers[0].Image != "web:v3" {
		t.Fatalf("Deployment web in C's namespace after D: %v %v, want C's image", d, err)
	}

	// E is tested in C's namespace.
	e := reuseSpec(t, gate, "web:v5", "web")
	log = stepLog{}
	if _, err := k.Test(ctx, e, log.on); err != nil {
		t.Fatalf("E: %v", err)
	}
	if ns, _ := log.find(StepNamespace); ns != c.Namespace || k.Kept(gate) != c.Namespace {
		t.Fatalf("E tested in %q, kept %q; want C's %s for both", ns, k.Kept(gate), c.Namespace)
	}
	// A kept namespace removed behind Sluice's back: the next candidate
	// gets a new one.
	if err := k.deleteNamespace(ctx, gate, c.Namespace); err != nil {
		t.Fatal(err)
	}
	f := reuseSpec(t, gate, "web:v6", "web")
	log = stepLog{}
	if _, err := k.Test(ctx, f, log.on); err != nil {
		t.Fatalf("F: %v", err)
	}
	if ns, _ := log.find(StepNamespace); ns != f.Namespace {
		t.Fatalf("F was tested in %q, want its own %s", ns, f.Namespace)
	}
	if err := k.Release(ctx, gate); err != nil {
		t.Fatal(err)
	}
	if _, exists := namespaceOf(t, client, f.Namespace); exists || k.Kept(gate) != "" {
		t.Fatalf("after Release: namespace %s exists %v, kept %q", f.Namespace, exists, k.Kept(gate))
	}
}

// A control run (Until) and a gate without Reuse never keep a namespace.
func TestNoReuseKeepsNothing(t *testing.T) {
	k, client := newTestCluster(t)
	ctx := context.Background()
	gate := "noreuse-" + randHex(3)
	t.Cleanup(func() { _, _ = k.Cleanup(context.Background(), gate) })
	for _, s := range []TestSpec{
		spec(gate, randHex(20), objects(t, deployment("web:v1"))),
		func() TestSpec {
			s := reuseSpec(t, gate, "web:v1", "web")
			s.Until = StepHealth
			return s
		}(),
	} {
		if _, err := k.Test(ctx, s, nil); err != nil {
			t.Fatal(err)
		}
		if k.Kept(gate) != "" {
			t.Fatalf("kept %q (reuse %v, until %q)", k.Kept(gate), s.Reuse, s.Until)
		}
		if _, exists := namespaceOf(t, client, s.Namespace); exists {
			t.Fatalf("namespace %s left after a passed test", s.Namespace)
		}
	}
}
