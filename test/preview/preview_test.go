package preview_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sluice-gitops/sluice/test/cluster"
	"github.com/sluice-gitops/sluice/test/fixture"
	"github.com/sluice-gitops/sluice/test/gitserver"
)

const services = 100

// env is a desired-state repository of 100 services (a Deployment and a
// Service each, as test/bench writes them) and a test Job, on main and
// staging, and a config whose gate runs staging in the namespace target.
type env struct {
	t      *testing.T
	c      *cluster.Cluster
	kube   kubernetes.Interface
	work   *gitserver.Work
	config string
	target string
}

func newEnv(t *testing.T, routing string) *env {
	t.Helper()
	c := cluster.Require(t)
	e := &env{t: t, c: c, kube: c.Client(t), target: c.Namespace(t)}
	srv := gitserver.Start(t, gitserver.Options{})
	srv.CreateRepo(t, "desired")
	e.work = srv.Clone(t, "desired")
	kust := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - contract-test.yaml\n"
	for i := 0; i < services; i++ {
		name := fmt.Sprintf("svc-%03d", i)
		e.work.Write(t, "environments/staging/"+name+".yaml", service(name, "v1"))
		kust += "  - " + name + ".yaml\n"
	}
	e.work.Write(t, "environments/staging/kustomization.yaml", kust)
	e.work.Write(t, "environments/staging/contract-test.yaml", `apiVersion: batch/v1
kind: Job
metadata:
  name: contract-test
  labels: {sluice.dev/test: "true"}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: check
          image: registry.example.com/contract-check:v1
`)
	e.work.Commit(t, "Initial desired state")
	if err := e.work.Push(t, "HEAD:refs/heads/main", "HEAD:refs/heads/staging"); err != nil {
		t.Fatal(err)
	}
	cfg := "repository:\n  url: " + srv.RepoURL("desired") + "\n" +
		"pollInterval: 1s\n" +
		"gates:\n" +
		"  - name: staging\n" +
		"    path: environments/staging\n" +
		"    targetBranch: staging\n" +
		"    timeouts: {tests: 60s}\n" +
		"    previews:\n" +
		"      namespace: " + e.target + "\n" +
		"      routing: " + routing + "\n" +
		"      branches: [\"preview/*\"]\n"
	e.config = filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

func service(name, tag string) string { return fixture.Service(name, tag) }

// sluice runs the binary with the config and the cluster's kubeconfig.
func (e *env) sluice(args ...string) (string, error) {
	e.t.Helper()
	args = append(args, "--config", e.config, "--kubeconfig", e.c.Kubeconfig)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sluiceBin, args...)
	cmd.Env = append(os.Environ(), "USER=tester")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (e *env) mustSluice(args ...string) string {
	e.t.Helper()
	out, err := e.sluice(args...)
	if err != nil {
		e.t.Fatalf("sluice %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// branch pushes a branch off main that sets svc's tag.
func (e *env) branch(name, svc, tag string) {
	e.t.Helper()
	e.work.Git(e.t, "checkout", "-q", "-B", name, "origin/main")
	e.work.Write(e.t, "environments/staging/"+svc+".yaml", service(svc, tag))
	e.work.Commit(e.t, "Try "+svc+" "+tag)
	if err := e.work.Push(e.t, "HEAD:refs/heads/"+name); err != nil {
		e.t.Fatal(err)
	}
	e.work.Git(e.t, "checkout", "-q", "main")
}

// assertPreview checks that exactly the Deployment of changed runs in the
// preview's namespace and every other Service is a stand-in for the
// target's.
func (e *env) assertPreview(name, changed, owner string) {
	e.t.Helper()
	ctx := context.Background()
	ns := "sluice-preview-" + name
	deps, err := e.kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	var names []string
	for _, d := range deps.Items {
		names = append(names, d.Name)
	}
	if !slices.Equal(names, []string{changed}) {
		e.t.Fatalf("Deployments in %s: %v, want only %s", ns, names, changed)
	}
	svcs, err := e.kube.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	if len(svcs.Items) != services {
		e.t.Fatalf("%d Services in %s, want %d", len(svcs.Items), ns, services)
	}
	for _, s := range svcs.Items {
		if s.Name == changed {
			if s.Spec.Type == corev1.ServiceTypeExternalName {
				e.t.Errorf("Service %s is a stand-in, want the preview's own", s.Name)
			}
			continue
		}
		want := s.Name + "." + e.target + ".svc.cluster.local"
		if s.Spec.Type != corev1.ServiceTypeExternalName || s.Spec.ExternalName != want {
			e.t.Errorf("Service %s: type %s to %q, want an ExternalName to %q", s.Name, s.Spec.Type, s.Spec.ExternalName, want)
		}
	}
	n, err := e.kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	if n.Labels["sluice.dev/preview"] != name || n.Labels["sluice.dev/gate"] != "staging" || n.Annotations["sluice.dev/owner"] != owner {
		e.t.Errorf("namespace %s: labels %v, annotations %v", ns, n.Labels, n.Annotations)
	}
}

// assertGone checks that the preview's namespace is gone or going.
func (e *env) assertGone(name string) {
	e.t.Helper()
	n, err := e.kube.CoreV1().Namespaces().Get(context.Background(), "sluice-preview-"+name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		e.t.Fatal(err)
	}
	if n.DeletionTimestamp == nil {
		e.t.Fatalf("namespace %s is still there", n.Name)
	}
}

func TestPreviewFromBranchRunsOnlyTheChangedServiceAndItsTests(t *testing.T) {
	e := newEnv(t, "externalname")
	e.branch("feature/checkout", "svc-042", "v2")
	out := e.mustSluice("preview", "up", "checkout", "--gate", "staging", "--branch", "feature/checkout")
	if !strings.Contains(out, "1 changed (Deployment/svc-042)") {
		t.Errorf("up said:\n%s", out)
	}
	e.assertPreview("checkout", "svc-042", "tester")
	// Up again is an update in place: the same objects, nothing removed.
	if out := e.mustSluice("preview", "up", "checkout", "--gate", "staging", "--branch", "feature/checkout"); !strings.Contains(out, "0 removed") {
		t.Errorf("second up said:\n%s", out)
	}
	if out := e.mustSluice("preview", "list"); !strings.Contains(out, "checkout") || !strings.Contains(out, "branch feature/checkout") || !strings.Contains(out, "tester") {
		t.Errorf("list said:\n%s", out)
	}
	if out := e.mustSluice("preview", "test", "checkout"); !strings.Contains(out, "preview checkout: passed (1 test objects") {
		t.Errorf("test said:\n%s", out)
	}
	// The branch moves on: svc-042 back as staging has it, svc-043 changed.
	// Up removes the Deployment no longer wanted and turns svc-042's
	// Service back into a stand-in.
	e.work.Git(t, "checkout", "-q", "feature/checkout")
	e.work.Write(t, "environments/staging/svc-042.yaml", service("svc-042", "v1"))
	e.work.Write(t, "environments/staging/svc-043.yaml", service("svc-043", "v2"))
	e.work.Commit(t, "Try svc-043 instead")
	if err := e.work.Push(t, "HEAD:refs/heads/feature/checkout"); err != nil {
		t.Fatal(err)
	}
	if out := e.mustSluice("preview", "up", "checkout", "--gate", "staging", "--branch", "feature/checkout"); !strings.Contains(out, "1 removed") {
		t.Errorf("up after the branch moved said:\n%s", out)
	}
	e.assertPreview("checkout", "svc-043", "tester")
	e.mustSluice("preview", "down", "checkout")
	e.assertGone("checkout")
}

func TestPreviewFromDirectoryAndItsExpiry(t *testing.T) {
	e := newEnv(t, "externalname")
	e.work.Write(t, "environments/staging/svc-007.yaml", service("svc-007", "local")) // not committed
	start := time.Now()
	e.mustSluice("preview", "up", "mine", "--gate", "staging", "--dir", e.work.Dir, "--ttl", "1ms")
	t.Logf("sluice preview up of a %d-service staging took %s", services, time.Since(start).Round(time.Millisecond))
	e.assertPreview("mine", "svc-007", "tester")
	// A failing test is a failed verdict: printed, exit code 1.
	e.work.Write(t, "environments/staging/contract-test.yaml", `apiVersion: batch/v1
kind: Job
metadata:
  name: contract-test
  labels: {sluice.dev/test: "true"}
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations: {sluice.dev/simulate: fail}
    spec:
      restartPolicy: Never
      containers:
        - name: check
          image: registry.example.com/contract-check:v1
`)
	out, err := e.sluice("preview", "test", "mine")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out, "preview mine: failed") {
		t.Errorf("test of a failing check: %v\n%s", err, out)
	}
	if out := e.mustSluice("preview", "gc"); !strings.Contains(out, "preview mine expired") {
		t.Errorf("gc said:\n%s", out)
	}
	e.assertGone("mine")
}

func TestPreviewOfDeletedBranchIsRemovedByTheDaemonLoop(t *testing.T) {
	e := newEnv(t, "externalname")
	e.branch("preview/pay", "svc-011", "v3")
	// preview/pay_ makes the same name: the first branch in order keeps it.
	e.branch("preview/pay_", "svc-099", "v3")
	e.mustSluice("preview", "sync") // one iteration of the daemon's loop
	e.assertPreview("preview-pay", "svc-011", "test@example.com")
	e.mustSluice("preview", "sync")
	e.assertPreview("preview-pay", "svc-011", "test@example.com")
	if err := e.work.Push(t, ":refs/heads/preview/pay"); err != nil {
		t.Fatal(err)
	}
	e.mustSluice("preview", "sync")
	e.assertGone("preview-pay")
}

func TestPreviewBadInputCreatesNothing(t *testing.T) {
	e := newEnv(t, "externalname")
	// A conflict: the branch and staging both changed svc-001 since the
	// branch's base.
	e.branch("feature/clash", "svc-001", "v9")
	e.work.Write(t, "environments/staging/svc-001.yaml", service("svc-001", "v2"))
	e.work.Commit(t, "Bump svc-001")
	if err := e.work.Push(t, "HEAD:refs/heads/main", "HEAD:refs/heads/staging"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		preview string
		args    []string
		want    string
	}{
		{"a name that is not a DNS label", "Bad_Name", []string{"--branch", "feature/clash"}, `"Bad_Name": not a preview name`},
		{"a branch that does not exist", "nobranch", []string{"--branch", "no/such"}, "--branch no/such: no such branch"},
		{"a directory outside the repository", "nodir", []string{"--dir", t.TempDir()}, "not the root of a Git working tree"},
		{"a file both changed", "clash", []string{"--branch", "feature/clash"}, "environments/staging/svc-001.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := e.sluice(append([]string{"preview", "up", tt.preview, "--gate", "staging"}, tt.args...)...)
			if err == nil || !strings.Contains(out, tt.want) {
				t.Errorf("err %v, output:\n%s\nwant it to say %q", err, out, tt.want)
			}
			_, gerr := e.kube.CoreV1().Namespaces().Get(context.Background(), "sluice-preview-"+strings.ToLower(tt.preview), metav1.GetOptions{})
			if !apierrors.IsNotFound(gerr) {
				t.Errorf("namespace of %s: %v, want none", tt.preview, gerr)
			}
		})
	}
}
