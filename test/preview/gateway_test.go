package preview_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"

	"github.com/sluice-gitops/sluice/test/cluster"
)

var (
	crdGVR   = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	routeGVR = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
	grantGVR = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "referencegrants"}
)

// installGatewayAPI installs the standard-channel CRDs of the Gateway API
// release test/tools/gateway pins, from the module cache, and waits until
// the API server serves them.
func installGatewayAPI(t *testing.T, dyn dynamic.Interface) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "mod", "download", "-json", "sigs.k8s.io/gateway-api")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "tools", "gateway")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod download sigs.k8s.io/gateway-api: %v", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download: %v: %s", err, out)
	}
	files, err := filepath.Glob(filepath.Join(mod.Dir, "config", "crd", "standard", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs in %s: %v", mod.Dir, err)
	}
	ctx := context.Background()
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			var o unstructured.Unstructured
			if err := dec.Decode(&o.Object); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if o.GetKind() != "CustomResourceDefinition" {
				continue // the release's admission policy is not needed here
			}
			_, err := dyn.Resource(crdGVR).Create(ctx, &o, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("create CRD %s: %v", o.GetName(), err)
			}
			names = append(names, o.GetName())
		}
	}
	deadline := time.Now().Add(time.Minute)
	for _, n := range names {
		for {
			crd, err := dyn.Resource(crdGVR).Get(ctx, n, metav1.GetOptions{})
			if err == nil && established(crd) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("CRD %s not established: %v", n, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

func TestPreviewWithGatewayAPIRoutesByHeaderAndDownRemovesTheRoutes(t *testing.T) {
	c := cluster.Require(t)
	dyn := c.Dynamic(t)
	installGatewayAPI(t, dyn)
	e := newEnv(t, "gateway-api")
	ctx := context.Background()
	// Staging runs in the target namespace: two of its Services, and a
	// route someone else wrote there.
	for _, name := range []string{"svc-042", "svc-001"} {
		s := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": name},
				Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt(8080)}},
			},
		}
		if _, err := e.kube.CoreV1().Services(e.target).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	theirs := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
		"metadata": map[string]any{"name": "someone-elses"},
		"spec":     map[string]any{"parentRefs": []any{map[string]any{"group": "", "kind": "Service", "name": "svc-001", "port": int64(80)}}},
	}}
	if _, err := dyn.Resource(routeGVR).Namespace(e.target).Create(ctx, theirs, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create a route of someone else: %v", err)
	}

	e.branch("feature/checkout", "svc-042", "v2")
	e.mustSluice("preview", "up", "gw", "--gate", "staging", "--branch", "feature/checkout")
	e.assertPreview("gw", "svc-042", "tester")

	// The API server took the route on staging's Service and the grant.
	route, err := dyn.Resource(routeGVR).Namespace(e.target).Get(ctx, "sluice-preview-gw-svc-042", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the preview's HTTPRoute: %v", err)
	}
	spec, _ := json.Marshal(route.Object["spec"])
	for _, want := range []string{`"kind":"Service","name":"svc-042"`, `"name":"x-sluice-preview","type":"Exact","value":"gw"`, `"namespace":"sluice-preview-gw"`} {
		if !strings.Contains(string(spec), want) {
			t.Errorf("route spec %s lacks %s", spec, want)
		}
	}
	if _, err := dyn.Resource(grantGVR).Namespace("sluice-preview-gw").Get(ctx, "sluice-preview-gw", metav1.GetOptions{}); err != nil {
		t.Errorf("the preview's ReferenceGrant: %v", err)
	}

	e.mustSluice("preview", "down", "gw")
	e.assertGone("gw")
	if _, err := dyn.Resource(routeGVR).Namespace(e.target).Get(ctx, route.GetName(), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the preview's HTTPRoute after down: %v, want it gone", err)
	}
	routes, err := dyn.Resource(routeGVR).Namespace(e.target).List(ctx, metav1.ListOptions{})
	if err != nil || len(routes.Items) != 1 || routes.Items[0].GetName() != "someone-elses" {
		t.Errorf("routes left in %s: %v %v, want only someone-elses", e.target, routes, err)
	}
	svcs, err := e.kube.CoreV1().Services(e.target).List(ctx, metav1.ListOptions{})
	if err != nil || len(svcs.Items) != 2 {
		t.Errorf("Services left in %s: %v, want staging's two", e.target, err)
	}
}
