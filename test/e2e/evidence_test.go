package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/sluice-gitops/sluice/manifests"
	"github.com/sluice-gitops/sluice/test/cluster"
	"github.com/sluice-gitops/sluice/testenv"
)

// The in-process clients of these tests log nothing (the binary sets its own logger).
func init() { ctrllog.SetLogger(logr.Discard()) }

// deploymentWith is a valid Deployment with extra lines added to its spec.
func deploymentWith(name, specLines string) string {
	return `apiVersion: apps/v1
kind: Deployment
metadata: {name: ` + name + `}
spec:
` + specLines + `  selector: {matchLabels: {app: ` + name + `}}
  template:
    metadata: {labels: {app: ` + name + `}}
    spec:
      containers: [{name: web, image: registry.example.com/web:v1}]
`
}

func parseObject(t testing.TB, doc string) *unstructured.Unstructured {
	t.Helper()
	m := map[string]any{}
	if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	return &unstructured.Unstructured{Object: m}
}

// TestAPIServerAnswersToManifestMistakes is a probe of the real API server:
// ordinary mistakes in a manifest, each applied the way Sluice applies a
// candidate. Every one must be the commit's fault (a testenv.Fault) whose
// message names the object and the field, whatever status the API server
// answers with: five of these come back as HTTP 500 without a reason, which
// Sluice once took for an outage and retried forever. The raw answers are
// logged; a future API server that words them differently fails this test.
func TestAPIServerAnswersToManifestMistakes(t *testing.T) {
	c := cluster.Require(t)
	ctx := t.Context()
	env, err := testenv.NewCluster(c.Config, c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := client.New(c.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	group := "probe" + randHex(3) + ".example.com"
	crd := parseObject(t, `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gizmos.`+group+`}
spec:
  group: `+group+`
  scope: Namespaced
  names: {kind: Gizmo, plural: gizmos, singular: gizmo, listKind: GizmoList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
              color: {type: string, enum: [red, blue]}
`)
	if err := raw.Create(ctx, crd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Delete(context.Background(), crd) })
	gizmo := func(spec string) string {
		return "apiVersion: " + group + "/v1\nkind: Gizmo\nmetadata: {name: g}\nspec: " + spec + "\n"
	}
	waitServed(t, env, raw, gizmo("{size: 1}"))

	tests := []struct {
		name string
		doc  string
		want []string // in the fault's message
	}{
		{"a string where a number goes", deploymentWith("web", "  replicas: \"two\"\n"), []string{"Deployment/", "/web", ".spec.replicas", "expected numeric"}},
		{"an unknown field", deploymentWith("web", "  bogus: 1\n"), []string{"Deployment/", ".spec.bogus", "not declared in schema"}},
		{"a list where a map goes", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: [a, b]\n", []string{"ConfigMap/", ".data", "expected map"}},
		{"a number where a string goes", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: 1}\n", []string{"ConfigMap/", ".data.a", "expected string"}},
		{"a string port", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: eighty}]}\n", []string{"Service/", ".port", "expected numeric"}},
		{"a duplicate list key", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}, {port: 80}]}\n", []string{"Service/", ".spec.ports", "duplicate entries"}},
		{"a value out of range", deploymentWith("web", "  replicas: -3\n"), []string{"Deployment", "web", "spec.replicas", "greater than or equal to 0"}},
		{"a bad label value", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: {team: 'web team!'}}\n", []string{"ConfigMap", "metadata.labels", "web team!"}},
		{"an invalid name", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Web_Config}\n", []string{"ConfigMap", "Web_Config", "metadata.name"}},
		{"a missing required field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {template: {spec: {containers: [{name: a, image: b}]}}}\n", []string{"Deployment", "spec.selector", "Required value"}},
		{"an apiVersion the cluster does not serve", "apiVersion: apps/v9\nkind: Deployment\nmetadata: {name: web}\n", []string{"Deployment", "apps/v9"}},
		{"a custom resource with a string where its schema wants an integer", gizmo("{size: big}"), []string{"Gizmo/", ".spec.size", "expected numeric"}},
		{"a custom resource below its schema's minimum", gizmo("{size: 0}"), []string{"Gizmo", "spec.size", "greater than or equal to 1"}},
		{"a custom resource outside its schema's enum", gizmo("{size: 1, color: green}"), []string{"Gizmo", "spec.color", "green"}},
		{"a custom resource without a required field", gizmo("{color: red}"), []string{"Gizmo", "spec.size", "Required value"}},
	}
	probe := "probe-" + randHex(3)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := parseObject(t, tt.doc)
			commit := fmt.Sprintf("%02x", i%256) + randHex(19)
			ns := manifests.TestNamespace(probe, commit)

			// What the API server answers to a plain server-side apply.
			rawObj := obj.DeepCopy()
			scratch := "scratch-" + ns
			if err := raw.Create(ctx, &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": scratch}}}); err != nil {
				t.Fatal(err)
			}
			defer func() {
				_ = raw.Delete(context.Background(), &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": scratch}}})
			}()
			rawObj.SetNamespace(scratch)
			rerr := raw.Patch(ctx, rawObj, client.Apply, client.FieldOwner("probe"), client.ForceOwnership)
			var status apierrors.APIStatus
			if errors.As(rerr, &status) {
				s := status.Status()
				t.Logf("API server: HTTP %d, reason %q: %s", s.Code, s.Reason, s.Message)
			} else {
				t.Logf("client: %v", rerr)
			}
			if rerr == nil {
				t.Fatalf("the API server accepted it: not a mistake this probe can use")
			}

			// What Sluice makes of it.
			_, err := env.Test(ctx, testenv.TestSpec{
				Gate: probe, Commit: commit, Namespace: ns,
				Objects:      []*unstructured.Unstructured{obj},
				ApplyTimeout: 30 * time.Second, HealthTimeout: 30 * time.Second, TestsTimeout: 30 * time.Second,
				Until: testenv.StepApply,
			}, nil)
			if !testenv.IsFault(err) {
				t.Fatalf("Sluice: %v (%T); want the commit's fault", err, err)
			}
			t.Logf("Sluice: %v", err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the fault does not name %q: %v", w, err)
				}
			}
		})
	}
}

// waitServed waits until the cluster serves a newly created CRD's kind.
func waitServed(t *testing.T, env *testenv.Cluster, raw client.Client, doc string) {
	t.Helper()
	obj := parseObject(t, doc)
	obj.SetNamespace("default")
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := raw.Patch(t.Context(), obj.DeepCopy(), client.Apply, client.FieldOwner("probe"), client.DryRunAll)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not served: %v", obj.GetKind(), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// servicesEnvironment renders n services, a Deployment and a Service each.
func servicesEnvironment(t testing.TB, n int) []*unstructured.Unstructured {
	var objs []*unstructured.Unstructured
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("svc-%03d", i)
		objs = append(objs,
			&unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": name},
				"spec": map[string]any{
					"replicas": int64(1),
					"selector": map[string]any{"matchLabels": map[string]any{"app": name}},
					"template": map[string]any{
						"metadata": map[string]any{"labels": map[string]any{"app": name}},
						"spec":     map[string]any{"containers": []any{map[string]any{"name": "app", "image": "registry.example.com/" + name + ":v1"}}},
					},
				},
			}},
			&unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "v1", "kind": "Service", "metadata": map[string]any{"name": name},
				"spec": map[string]any{
					"selector": map[string]any{"app": name},
					"ports":    []any{map[string]any{"port": int64(80)}},
				},
			}},
		)
	}
	return objs
}

// BenchmarkApply100 applies a 100-service environment (200 objects) into a
// test namespace and waits for it to be healthy, with the client the daemon
// makes (NewCluster given a kubeconfig without a rate limit of its own):
//
//	SLUICE_TOOLS_DIR=/work/main/bin go test -run '^$' -bench Apply100 -benchtime 3x ./test/e2e
func BenchmarkApply100(b *testing.B) {
	c := cluster.Require(b)
	cfg := rest.CopyConfig(c.Config)
	cfg.QPS, cfg.Burst = 0, 0 // as loaded from a kubeconfig file
	env, err := testenv.NewCluster(cfg, c.Kubeconfig)
	if err != nil {
		b.Fatal(err)
	}
	objs := servicesEnvironment(b, 100)
	gate := "bench-" + randHex(3)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		commit := fmt.Sprintf("%02x", i%256) + randHex(19)
		durations, err := env.Test(b.Context(), testenv.TestSpec{
			Gate: gate, Commit: commit, Namespace: manifests.TestNamespace(gate, commit),
			Objects:      objs,
			ApplyTimeout: 10 * time.Minute, HealthTimeout: 10 * time.Minute, TestsTimeout: time.Minute,
		}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(durations[testenv.StepApply].Seconds(), "apply-s/op")
		b.ReportMetric(durations[testenv.StepHealth].Seconds(), "health-s/op")
	}
	b.StopTimer()
	// Let the namespaces go before the next benchmark or test.
	kube := c.Client(b)
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		list, err := kube.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{LabelSelector: manifests.LabelGate + "=" + gate})
		if err != nil || len(list.Items) == 0 {
			break
		}
		time.Sleep(time.Second)
	}
}

// scopeOverride is a CRD that declares a built-in cluster-scoped kind
// "Namespaced", and an object of that kind: were the CRD believed, the
// object would be applied into the test namespace, and the API server,
// which ignores the namespace of a cluster-scoped kind, would create it
// cluster-wide.
func scopeOverride(kind, plural, object string) string {
	return `---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: ` + plural + `.rbac.authorization.k8s.io
  annotations: {api-approved.kubernetes.io: "https://github.com/kubernetes/kubernetes/pull/1"}
spec:
  group: rbac.authorization.k8s.io
  scope: Namespaced
  names: {kind: ` + kind + `, plural: ` + plural + `}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
---
` + object
}

// TestClusterRefusalsAreFailedAndRevertedOnce pushes commits the cluster
// refuses, through the real queue: schema errors the API server answers
// with HTTP 500 and no reason, and CRDs that declare a built-in
// cluster-scoped kind Namespaced. Each is failed once (never retried),
// with a reason naming the object and field, reverted once; nothing
// cluster-scoped is created; the next commit is tested normally.
func TestClusterRefusalsAreFailedAndRevertedOnce(t *testing.T) {
	s := newScenario(t, scenarioOptions{})
	ctx := t.Context()
	suffix := randHex(3)
	_, a := version("a", "v2")
	_, b := version("b", "v2")
	svcZ := s.file("main", "services/z/service.yaml")
	svcA := s.file("main", "services/a/service.yaml")
	svcB := s.file("main", "services/b/service.yaml")
	depZ := s.file("main", "services/z/deployment.yaml")
	binding, role := "everyone-admin-"+suffix, "all-powerful-"+suffix

	cases := []struct {
		name   string
		commit string
		want   []string
	}{
		{"a string where a number goes (HTTP 500)", s.push("Berlin", "scale A to two",
			"environments/staging/versions/a.yaml", strings.Replace(a, "spec:\n  template:", "spec:\n  replicas: \"two\"\n  template:", 1)),
			[]string{"Deployment/", "/a", "field .spec.replicas", "expected numeric"}},
		{"an unknown field (HTTP 500)", s.push("London", "B with a field Kubernetes does not have",
			"environments/staging/versions/b.yaml", strings.Replace(b, "spec:\n  template:", "spec:\n  replicass: 2\n  template:", 1)),
			[]string{"Deployment/", "/b", "field .spec.replicass", "not declared in schema"}},
		{"a string port (HTTP 500)", s.push("New York", "Z's port by name",
			"services/z/service.yaml", strings.Replace(svcZ, "port: 80", "port: eighty", 1)),
			[]string{"Service/", "/z", ".port", "expected numeric"}},
		{"a list where a map goes (HTTP 500)", s.push("Berlin", "A's settings",
			"services/a/service.yaml", svcA+"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a-settings}\ndata: [debug, verbose]\n"),
			[]string{"ConfigMap/", "a-settings", "field .data", "expected map"}},
		{"a CRD declaring ClusterRoleBinding Namespaced", s.push("London", "B's operator access",
			"services/b/service.yaml", svcB+scopeOverride("ClusterRoleBinding", "clusterrolebindings", `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: `+binding+`}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: Group, name: "system:authenticated", apiGroup: rbac.authorization.k8s.io}]
`)),
			[]string{"CustomResourceDefinition/clusterrolebindings.rbac.authorization.k8s.io", "spec.scope", "the cluster serves it Cluster"}},
		{"a CRD declaring ClusterRole Namespaced", s.push("New York", "Z's reader role",
			"services/z/deployment.yaml", depZ+scopeOverride("ClusterRole", "clusterroles", `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: `+role+`}
rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]
`)),
			[]string{"CustomResourceDefinition/clusterroles.rbac.authorization.k8s.io", "spec.scope", "the cluster serves it Cluster"}},
	}
	good := s.push("Berlin", "bump A to v3", pair(version("a", "v3"))...)

	if r := s.runOnce(); r.code != 0 {
		t.Fatalf("sluice run --once exited %d", r.code)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := s.mustNote(tc.commit, "failed")
			for _, w := range tc.want {
				if !strings.Contains(rec.Reason, w) {
					t.Errorf("reason does not contain %q:\n%s", w, rec.Reason)
				}
			}
			if rec.Attempts != 1 {
				t.Errorf("tested %d times, want once: a refusal is not retried", rec.Attempts)
			}
			if rec.RevertCommit.IsZero() {
				t.Fatalf("no revert recorded")
			}
			if n := strings.Count(s.git("log", "--format=%H%n%b", "main"), "This reverts commit "+tc.commit); n != 1 {
				t.Errorf("%d reverts of %s on main, want 1", n, tc.commit[:7])
			}
		})
	}
	s.mustNote(good, "passed")
	if got := s.tip("staging"); got != s.tip("main") {
		t.Errorf("staging = %s, want main's tip %s", got[:7], s.tip("main")[:7])
	}
	if !strings.Contains(s.file("staging", "environments/staging/versions/a.yaml"), "a:v3") {
		t.Errorf("staging does not have A v3")
	}
	rbac := s.kube.RbacV1()
	if _, err := rbac.ClusterRoleBindings().Get(ctx, binding, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ClusterRoleBinding %s: %v; want it never created", binding, err)
	}
	if _, err := rbac.ClusterRoles().Get(ctx, role, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ClusterRole %s: %v; want it never created", role, err)
	}
}

// TestUnrecognisedAnswerIsJudgedByAControlRun: the cluster answers with an
// error Sluice does not recognise (an admission webhook that cannot be
// called: HTTP 500). While only the commit's objects trigger it, the control
// run of the last passed candidate passes and the commit is failed and
// reverted once. While it refuses everything, the control fails too: the
// cluster is at fault, the commit is retried and never reverted, and passes
// once the cluster is fixed.
func TestUnrecognisedAnswerIsJudgedByAControlRun(t *testing.T) {
	s := newScenario(t, scenarioOptions{onceAttempts: 2})
	ctx := t.Context()
	label := "e2e-webhook-" + randHex(3)
	admission := s.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	fail := admissionv1.Fail
	none := admissionv1.SideEffectClassNone
	path := "/validate"
	hook := func(objectSelector *metav1.LabelSelector) *admissionv1.ValidatingWebhookConfiguration {
		return &admissionv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: label},
			Webhooks: []admissionv1.ValidatingWebhook{{
				Name:                    label + ".example.com",
				ClientConfig:            admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: "default", Name: "nowhere-" + label, Path: &path}},
				Rules:                   []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update}, Rule: admissionv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments"}}}},
				FailurePolicy:           &fail,
				SideEffects:             &none,
				AdmissionReviewVersions: []string{"v1"},
				// Only this test's gate: the cluster is shared.
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{manifests.LabelGate: s.gate}},
				ObjectSelector:    objectSelector,
			}},
		}
	}
	created, err := admission.Create(ctx, hook(&metav1.LabelSelector{MatchLabels: map[string]string{label: "on"}}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admission.Delete(context.Background(), label, metav1.DeleteOptions{}) })

	// Only the commit's Deployment carries the label the webhook selects.
	a3 := s.push("Berlin", "bump A to v3", pair(version("a", "v3"))...)
	_, b := version("b", "v3")
	labelled := s.push("London", "B v3, labelled", "environments/staging/versions/b.yaml",
		strings.Replace(b, "  name: b\n", "  name: b\n  labels: {"+label+": \"on\"}\n", 1))
	if r := s.runOnce(); r.code != 0 {
		t.Fatalf("sluice run --once exited %d", r.code)
	}
	s.mustNote(a3, "passed")
	rec := s.mustNote(labelled, "failed")
	for _, w := range []string{"the last passed candidate " + a3[:7] + " applies on the same cluster, so this is the commit's fault", "Deployment", "failed calling webhook"} {
		if !strings.Contains(rec.Reason, w) {
			t.Errorf("reason does not contain %q:\n%s", w, rec.Reason)
		}
	}
	if rec.RevertCommit.IsZero() || strings.Count(s.git("log", "--format=%b", "main"), "This reverts commit "+labelled) != 1 {
		t.Errorf("want one revert of %s", labelled[:7])
	}

	// Now the webhook refuses every Deployment of the gate: the cluster's fault.
	created.Webhooks[0].ObjectSelector = nil
	if _, err := admission.Update(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := s.tip("main")
	a4 := s.push("Berlin", "bump A to v4", pair(version("a", "v4"))...)
	if r := s.runOnce(); r.code == 0 {
		t.Fatalf("sluice run --once exited 0 while the cluster refuses every candidate")
	}
	rec, _ = s.note(a4)
	if rec.Verdict != "error" || !strings.Contains(rec.Reason, "so the cluster is at fault") {
		t.Errorf("a4 = %s: %q; want error, the cluster at fault", rec.Verdict, rec.Reason)
	}
	if got := s.tip("main"); got != a4 {
		t.Errorf("main moved from %s to %s: the cluster's fault must not revert (before: %s)", a4[:7], got[:7], before[:7])
	}

	// Fixed: the same commit is tested again and passes.
	if err := admission.Delete(ctx, label, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if r := s.runOnce(); r.code != 0 {
		t.Fatalf("sluice run --once exited %d after the cluster was fixed", r.code)
	}
	s.mustNote(a4, "passed")
	if got := s.tip("staging"); got != a4 {
		t.Errorf("staging = %s, want %s", got[:7], a4[:7])
	}
}
