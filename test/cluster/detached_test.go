package cluster_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sluice-gitops/sluice/test/cluster"
)

// TestDetachedClusterOutlivesItsStarter starts a detached cluster from a
// helper process that then exits, finds it again with Attach, and stops it
// with StopDetached from this one.
func TestDetachedClusterOutlivesItsStarter(t *testing.T) {
	if os.Getenv("SLUICE_TEST_KUBECONFIG") != "" {
		t.Skip("the package cluster is external; not starting another")
	}
	shared := cluster.Require(t)
	workdir := filepath.Join(t.TempDir(), "detached")
	t.Cleanup(func() {
		if err := cluster.StopDetached(workdir); err != nil {
			t.Error(err)
		}
	})

	cmd := exec.Command(os.Args[0], "-test.run=^TestDetachedHelper$", "-test.v")
	// The helper uses this package's cluster rather than start one more.
	cmd.Env = append(os.Environ(), "SLUICE_CLUSTER_DETACHED_HELPER="+workdir, "SLUICE_TEST_KUBECONFIG="+shared.Kubeconfig)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}

	c, err := cluster.Attach(workdir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	nodes, err := kubernetes.NewForConfigOrDie(c.Config).CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("the cluster did not outlive its starter: %v", err)
	}
	if len(nodes.Items) != 1 {
		t.Errorf("%d nodes, want 1", len(nodes.Items))
	}
	// The helper asked for a capacity other than kwok's default.
	for _, n := range nodes.Items {
		for name, list := range map[string]corev1.ResourceList{"allocatable": n.Status.Allocatable, "capacity": n.Status.Capacity} {
			if got := list.Pods().Value(); got != 300 {
				t.Errorf("node %s: %s pods = %d, want 300", n.Name, name, got)
			}
		}
	}
	if _, err := cluster.StartDetached(ctx, cluster.Options{Name: "again", Nodes: 1}, workdir); err == nil {
		t.Error("a second StartDetached in the same directory succeeded")
	}

	if err := cluster.StopDetached(workdir); err != nil {
		t.Fatal(err)
	}
	assertGone(t, workdir)
	if err := cluster.StopDetached(workdir); err != nil {
		t.Errorf("second StopDetached: %v", err)
	}
	if _, err := cluster.Attach(workdir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Attach after StopDetached: %v, want fs.ErrNotExist", err)
	}
}

func TestDetachedHelper(t *testing.T) {
	workdir := os.Getenv("SLUICE_CLUSTER_DETACHED_HELPER")
	if workdir == "" {
		t.Skip("run by TestDetachedClusterOutlivesItsStarter")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := cluster.StartDetached(ctx, cluster.Options{Name: "detached", Nodes: 1, PodsPerNode: 300}, workdir); err != nil {
		t.Fatal(err)
	}
}
