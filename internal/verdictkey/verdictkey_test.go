package verdictkey

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/test/cluster"
)

func TestMain(m *testing.M) { os.Exit(cluster.Main(m)) }

// sig is what key signs for a fixed record: two keys are the same key when
// their signatures are.
func sig(t *testing.T, key *gitrepo.VerdictKey) string {
	t.Helper()
	rec, err := key.SignRecord(plumbing.ZeroHash, gitrepo.Record{Gate: "g", Verdict: gitrepo.VerdictPassed})
	if err != nil {
		t.Fatal(err)
	}
	return rec.Signature
}

// freshNamespace is a namespace name nobody uses yet; it is deleted after the test.
func freshNamespace(t *testing.T, client kubernetes.Interface) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	ns := "sluice-key-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		err := client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", ns, err)
		}
	})
	return ns
}

// Replicas starting at once on a cluster with no key agree on one: the
// Secret is created once, labelled as Sluice's, in a namespace created for
// it, and read back by every later start.
func TestEnsureCreatesOneKey(t *testing.T) {
	c := cluster.Require(t)
	client := c.Client(t)
	ns := freshNamespace(t, client)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	const replicas = 4
	sigs := make([]string, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() {
			key, err := Ensure(ctx, client, ns)
			if err != nil {
				t.Error(err)
				return
			}
			sigs[i] = sig(t, key)
		})
	}
	wg.Wait()
	for i := 1; i < replicas; i++ {
		if sigs[i] != sigs[0] {
			t.Fatalf("replica %d has another key than replica 0", i)
		}
	}
	s, err := client.CoreV1().Secrets(ns).Get(ctx, SecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Data[SecretKey]) != GeneratedLen || s.Labels["app.kubernetes.io/managed-by"] != "sluice" {
		t.Errorf("Secret has %d key bytes and labels %v; want %d bytes, managed by sluice", len(s.Data[SecretKey]), s.Labels, GeneratedLen)
	}
	if got, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil || got.Labels["app.kubernetes.io/managed-by"] != "sluice" {
		t.Errorf("namespace %s: %v, labels %v", ns, err, got.Labels)
	}
	for name, load := range map[string]func() (*gitrepo.VerdictKey, error){
		"a later start": func() (*gitrepo.VerdictKey, error) { return Ensure(ctx, client, ns) },
		"status (read only)": func() (*gitrepo.VerdictKey, error) {
			return Load(ctx, Source{Namespace: ns}, func() (kubernetes.Interface, error) { return client, nil }, false)
		},
	} {
		key, err := load()
		if err != nil || sig(t, key) != sigs[0] {
			t.Errorf("%s: %v, same key %v", name, err, err == nil && sig(t, key) == sigs[0])
		}
	}
}

func TestReadNeverCreates(t *testing.T) {
	c := cluster.Require(t)
	client := c.Client(t)
	ns := c.Namespace(t)
	if _, err := Read(t.Context(), client, ns); err == nil || !apierrors.IsNotFound(err) {
		t.Errorf("Read of a missing Secret = %v, want not found", err)
	}
	if _, err := client.CoreV1().Secrets(ns).Get(t.Context(), SecretName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Read created the Secret: %v", err)
	}
}

// A Secret holding a key too short to trust is refused, and the error does
// not show it.
func TestBadSecretIsRefused(t *testing.T) {
	c := cluster.Require(t)
	client := c.Client(t)
	ns := c.Namespace(t)
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: SecretName, Namespace: ns}, Data: map[string][]byte{SecretKey: []byte("hunter2")}}
	if _, err := client.CoreV1().Secrets(ns).Create(t.Context(), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := Ensure(t.Context(), client, ns)
	if err == nil || !strings.Contains(err.Error(), ns+"/"+SecretName) || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Ensure with a short key = %v, want an error naming the Secret and not the key", err)
	}
}

func TestLoadFromFileOrEnv(t *testing.T) {
	secret := strings.Repeat("s3cret", 6)
	file := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(short, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLUICE_TEST_VERDICT_KEY", secret)
	t.Setenv("SLUICE_TEST_SHORT_KEY", "s3cret")
	noCluster := func() (kubernetes.Interface, error) { t.Error("asked for a cluster"); return nil, os.ErrInvalid }
	want, _ := gitrepo.NewVerdictKey([]byte(secret))
	tests := []struct {
		name    string
		src     Source
		wantErr string
	}{
		{name: "a file, its trailing newline dropped", src: Source{File: file}},
		{name: "an environment variable", src: Source{Env: "SLUICE_TEST_VERDICT_KEY"}},
		{name: "both", src: Source{File: file, Env: "SLUICE_TEST_VERDICT_KEY"}, wantErr: "both set"},
		{name: "a missing file", src: Source{File: file + ".missing"}, wantErr: file + ".missing"},
		{name: "a short file", src: Source{File: short}, wantErr: short},
		{name: "an unset variable", src: Source{Env: "SLUICE_TEST_UNSET_KEY"}, wantErr: "SLUICE_TEST_UNSET_KEY is not set"},
		{name: "a short variable", src: Source{Env: "SLUICE_TEST_SHORT_KEY"}, wantErr: "SLUICE_TEST_SHORT_KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := Load(t.Context(), tt.src, noCluster, true)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "s3cret") {
					t.Errorf("Load() = %v, want an error naming %q and not the key", err, tt.wantErr)
				}
				return
			}
			if err != nil || sig(t, key) != sig(t, want) {
				t.Errorf("Load() = %v; same key: %v", err, err == nil && sig(t, key) == sig(t, want))
			}
		})
	}
}
