package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/sluice-gitops/sluice/manifests"
	"github.com/sluice-gitops/sluice/test/cluster"
	"github.com/sluice-gitops/sluice/test/gitserver"
)

// TestGateOnItsOwnCluster: with gates[].kubeconfig, shared-dev is tested on
// a second cluster (a path relative to the config file) and staging on the
// daemon's own, both at once: each gate's test namespaces appear in its own
// cluster only, and both gates still pass a3 and move their branches.
func TestGateOnItsOwnCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	second, err := cluster.Start(ctx, cluster.DefaultOptions())
	if err != nil {
		t.Fatalf("start a second cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := second.Stop(); err != nil {
			t.Errorf("stop the second cluster: %v", err)
		}
	})

	dev := "dev-" + randHex(3)
	s := newScenario(t, scenarioOptions{extraGate: "  - name: " + dev + "\n" +
		"    path: environments/shared-dev\n" +
		"    targetBranch: shared-dev\n" +
		"    kubeconfig: dev-cluster.kubeconfig\n" +
		"    timeouts: {apply: 30s, health: 60s}\n" +
		"    onFailure: {keepNamespace: 0s}\n" +
		"    retry: {initialBackoff: 1s, maxBackoff: 4s, onceAttempts: 5}\n"})
	kc, err := os.ReadFile(second.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "dev-cluster.kubeconfig"), kc, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.work.Push(t, "HEAD:refs/heads/shared-dev"); err != nil {
		t.Fatal(err)
	}
	s.srv.InstallHook(t, s.repo, "pre-receive", gitserver.ProtectBranches("main", "staging", "shared-dev"))

	own := gateNamespaces(t, s.kube)
	other := gateNamespaces(t, second.Client(t))

	devA3, devA3Content := version("a", "v3")
	devA3 = strings.Replace(devA3, "environments/staging/", "environments/shared-dev/", 1)
	a3 := s.push("Berlin", "bump A to v3 in shared-dev and staging", append(pair(version("a", "v3")), devA3, devA3Content)...)
	if r := s.runOnce(); r.code != 0 {
		t.Fatalf("sluice run --once exited %d", r.code)
	}
	seenOwn, seenOther := own(), other()
	for name, c := range map[string]struct {
		seen      map[string][]string
		want, not string
	}{
		"the daemon's own cluster": {seenOwn, s.gate, dev},
		"the second cluster":       {seenOther, dev, s.gate},
	} {
		if len(c.seen[c.want]) == 0 {
			t.Errorf("%s: no test namespace of gate %s (saw %v)", name, c.want, c.seen)
		}
		if len(c.seen[c.not]) > 0 {
			t.Errorf("%s: test namespaces of gate %s: %v", name, c.not, c.seen[c.not])
		}
	}
	s.mustNote(a3, "passed")
	for _, branch := range []string{"staging", "shared-dev"} {
		if got := s.tip(branch); got != a3 {
			t.Errorf("%s = %s, want a3 %s", branch, got[:7], a3[:7])
		}
	}
	left, err := second.Client(t).CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: manifests.LabelGate + "=" + dev})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range left.Items {
		if ns.DeletionTimestamp == nil {
			t.Errorf("namespace %s of gate %s left on the second cluster", ns.Name, dev)
		}
	}
}

// gateNamespaces watches the Sluice namespaces created in a cluster from now
// on; stop returns their names by gate.
func gateNamespaces(t *testing.T, kube kubernetes.Interface) (stop func() map[string][]string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sel := manifests.LabelManagedBy + "=" + manifests.ManagedByValue
	list, err := kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	w, err := kube.CoreV1().Namespaces().Watch(ctx, metav1.ListOptions{LabelSelector: sel, ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string][]string{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.ResultChan() {
			if e.Type != watch.Added {
				continue
			}
			if m, err := metaOf(e.Object); err == nil {
				mu.Lock()
				g := m.GetLabels()[manifests.LabelGate]
				seen[g] = append(seen[g], m.GetName())
				mu.Unlock()
			}
		}
	}()
	return func() map[string][]string {
		w.Stop()
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return seen
	}
}
