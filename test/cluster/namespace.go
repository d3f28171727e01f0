package cluster

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// NamespaceLabel marks the namespaces Namespace creates.
const NamespaceLabel = "sluice.dev/test-namespace"

// Namespace creates a namespace for the test, "t-<test name>-<random>", and
// deletes it when the test ends. It returns once Pods can be created in it
// (its default ServiceAccount exists). On a nil Cluster it acts as Require.
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	if c == nil {
		c = Require(t)
	}
	client := c.Client(t)
	name := namespaceName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   name,
		Labels: map[string]string{NamespaceLabel: "true"},
	}}
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	for {
		err := defaultServiceAccount(ctx, client, name)
		if err == nil {
			return name
		}
		select {
		case <-ctx.Done():
			t.Fatalf("namespace %s: %v", name, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// namespaceName makes a valid, unique namespace name from a test name.
func namespaceName(test string) string {
	var b strings.Builder
	dash := true // no leading dash, no runs of dashes
	for _, r := range strings.ToLower(test) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
			dash = false
		case !dash:
			b.WriteByte('-')
			dash = true
		}
	}
	base := strings.TrimSuffix(b.String(), "-")
	if len(base) > 48 {
		base = strings.TrimSuffix(base[:48], "-")
	}
	return fmt.Sprintf("t-%s-%s", base, randomSuffix(5))
}

func randomSuffix(n int) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789" // no vowels: no words
	buf := make([]byte, n)
	_, _ = rand.Read(buf)
	for i := range buf {
		buf[i] = alphabet[int(buf[i])%len(alphabet)]
	}
	return string(buf)
}

// Client returns a clientset for the cluster. On a nil Cluster it acts as
// Require.
func (c *Cluster) Client(t testing.TB) kubernetes.Interface {
	t.Helper()
	if c == nil {
		c = Require(t)
	}
	client, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatalf("client for test cluster: %v", err)
	}
	return client
}

// Dynamic returns a dynamic client for the cluster. On a nil Cluster it acts
// as Require.
func (c *Cluster) Dynamic(t testing.TB) dynamic.Interface {
	t.Helper()
	if c == nil {
		c = Require(t)
	}
	client, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatalf("dynamic client for test cluster: %v", err)
	}
	return client
}
