// Package verdictkey finds the key Sluice signs its verdicts with: in a file
// or an environment variable the configuration names, or else in a
// Kubernetes Secret of Sluice's own, which the first Sluice to start creates
// with a random key. It never prints, logs or returns the key in an error.
package verdictkey

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sluice-gitops/sluice/gitrepo"
)

const (
	// SecretName is the Secret that holds a generated key.
	SecretName = "sluice-verdict-key"
	// SecretKey is the key's entry in the Secret's data.
	SecretKey = "key"
	// GeneratedLen is the length of a generated key, in bytes.
	GeneratedLen = 32
)

// Labels mark the Secret (and a namespace created for it) as Sluice's.
var Labels = map[string]string{"app.kubernetes.io/managed-by": "sluice"}

// Source is where the configuration says the key is: File or Env, or, with
// neither, the Secret SecretName in Namespace.
type Source struct {
	File      string
	Env       string
	Namespace string
}

// Load returns the key src names. With neither File nor Env it reads the
// Secret from the cluster kube returns; create makes it (and its namespace)
// with a random key when it is missing, as `sluice run` does, while
// `sluice status` only reads.
func Load(ctx context.Context, src Source, kube func() (kubernetes.Interface, error), create bool) (*gitrepo.VerdictKey, error) {
	switch {
	case src.File != "" && src.Env != "":
		return nil, errors.New("verdict key: verdictKeyFile and verdictKeyEnv are both set")
	case src.File != "":
		b, err := os.ReadFile(src.File)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return nil, fmt.Errorf("verdict key: read %s: %w", src.File, err)
		}
		k, err := gitrepo.NewVerdictKey([]byte(strings.TrimRight(string(b), "\r\n")))
		if err != nil {
			return nil, fmt.Errorf("verdict key file %s: %w", src.File, err)
		}
		return k, nil
	case src.Env != "":
		v, ok := os.LookupEnv(src.Env)
		if !ok {
			return nil, fmt.Errorf("verdict key: environment variable %s is not set", src.Env)
		}
		k, err := gitrepo.NewVerdictKey([]byte(v))
		if err != nil {
			return nil, fmt.Errorf("verdict key: environment variable %s: %w", src.Env, err)
		}
		return k, nil
	}
	client, err := kube()
	if err != nil {
		return nil, fmt.Errorf("verdict key: %w", err)
	}
	if create {
		return Ensure(ctx, client, src.Namespace)
	}
	return Read(ctx, client, src.Namespace)
}

// Read returns the key kept in the Secret in namespace.
func Read(ctx context.Context, client kubernetes.Interface, namespace string) (*gitrepo.VerdictKey, error) {
	s, err := client.CoreV1().Secrets(namespace).Get(ctx, SecretName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("verdict key: read Secret %s/%s: %w", namespace, SecretName, err)
	}
	return fromSecret(s)
}

// Ensure returns the key kept in the Secret in namespace, creating the
// Secret with a random key (and the namespace) when there is none. Two
// Sluices starting at once agree: the one whose create loses reads back
// the winner's.
func Ensure(ctx context.Context, client kubernetes.Interface, namespace string) (*gitrepo.VerdictKey, error) {
	secrets := client.CoreV1().Secrets(namespace)
	s, err := secrets.Get(ctx, SecretName, metav1.GetOptions{})
	if err == nil {
		return fromSecret(s)
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("verdict key: read Secret %s/%s: %w", namespace, SecretName, err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace, Labels: Labels}}
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("verdict key: create namespace %s: %w", namespace, err)
	}
	key := make([]byte, GeneratedLen)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("verdict key: %w", err)
	}
	immutable := true
	s = &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: SecretName, Namespace: namespace, Labels: Labels},
		Type:       corev1.SecretTypeOpaque,
		Immutable:  &immutable,
		Data:       map[string][]byte{SecretKey: key},
	}
	created, err := secrets.Create(ctx, s, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return Read(ctx, client, namespace)
	}
	if err != nil {
		return nil, fmt.Errorf("verdict key: create Secret %s/%s: %w", namespace, SecretName, err)
	}
	return fromSecret(created)
}

func fromSecret(s *corev1.Secret) (*gitrepo.VerdictKey, error) {
	k, err := gitrepo.NewVerdictKey(s.Data[SecretKey])
	if err != nil {
		return nil, fmt.Errorf("verdict key: Secret %s/%s, data %q: %w", s.Namespace, s.Name, SecretKey, err)
	}
	return k, nil
}
