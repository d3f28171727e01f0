package preview_test

import (
	"bytes"
	"context"
	"os/exec"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestDaemonKeepsABranchPreview: `sluice run` (the daemon) brings up the
// preview of a preview/* branch and removes it once the branch is deleted.
func TestDaemonKeepsABranchPreview(t *testing.T) {
	e := newEnv(t, "externalname")
	e.branch("preview/cart", "svc-005", "v2")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, sluiceBin, "run", "--config", e.config, "--kubeconfig", e.c.Kubeconfig)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("daemon:\n%s", logs.String())
		}
	}()
	waitFor := func(what string, done func() bool) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); !done(); time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the daemon did not %s within a minute", what)
			}
		}
	}
	ns := "sluice-preview-preview-cart"
	waitFor("bring up the branch's preview", func() bool {
		s, err := e.kube.CoreV1().Services(ns).List(context.Background(), metav1.ListOptions{})
		return err == nil && len(s.Items) == services
	})
	e.assertPreview("preview-cart", "svc-005", "test@example.com")
	if err := e.work.Push(t, ":refs/heads/preview/cart"); err != nil {
		t.Fatal(err)
	}
	waitFor("remove the preview of the deleted branch", func() bool {
		n, err := e.kube.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err) || err == nil && n.DeletionTimestamp != nil
	})
}
