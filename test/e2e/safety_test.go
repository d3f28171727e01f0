package e2e

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-gitops/sluice/manifests"
)

// TestDeletesOnlyItsOwnNamespaces: Sluice removes leftovers labelled as its
// gate's, and nothing else: not a look-alike name without the labels, not
// another gate's namespace. A look-alike in the way of a test namespace
// stops the gate rather than being deleted or reused.
func TestDeletesOnlyItsOwnNamespaces(t *testing.T) {
	s := newScenario(t, scenarioOptions{})
	ctx := t.Context()
	mk := func(name string, labels map[string]string) {
		t.Helper()
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
		if _, err := s.kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.kube.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}) })
	}
	ours := map[string]string{manifests.LabelManagedBy: manifests.ManagedByValue, manifests.LabelGate: s.gate}
	mk("sluice-"+s.gate+"-0000001", ours) // a leftover of an interrupted run
	mk("sluice-"+s.gate+"-0000002", nil)  // a look-alike without labels
	mk("sluice-"+s.gate+"-0000003", map[string]string{manifests.LabelManagedBy: manifests.ManagedByValue, manifests.LabelGate: "other"})

	a3 := s.push("Berlin", "bump A to v3", pair(version("a", "v3"))...)
	if r := s.runOnce(); r.code != 0 {
		t.Fatalf("sluice run --once exited %d", r.code)
	}
	s.mustNote(a3, "passed")
	gone := func(name string) bool {
		ns, err := s.kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err) || (err == nil && ns.DeletionTimestamp != nil)
	}
	if !gone("sluice-" + s.gate + "-0000001") {
		t.Errorf("the gate's own leftover was not removed")
	}
	for _, name := range []string{"sluice-" + s.gate + "-0000002", "sluice-" + s.gate + "-0000003"} {
		if gone(name) {
			t.Errorf("%s was deleted: it is not labelled as this gate's", name)
		}
	}

	// A namespace without the labels where the next test namespace would go.
	next := s.push("New York", "bump Z to v1", pair(version("z", "v1"))...)
	squatter := manifests.TestNamespace(s.gate, next)
	mk(squatter, map[string]string{"team": "new-york"})
	r := s.runOnce()
	if r.code == 0 || !strings.Contains(r.stderr, "is not Sluice's") {
		t.Fatalf("sluice run --once exited %d; want the gate stopped because %s is not Sluice's", r.code, squatter)
	}
	if gone(squatter) {
		t.Errorf("the unlabelled namespace %s was deleted", squatter)
	}
	if _, ok := s.note(next); ok {
		t.Errorf("a verdict was recorded for %s", next[:7])
	}
}
