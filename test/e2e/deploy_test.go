package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sluice-gitops/sluice/manifests"
	"github.com/sluice-gitops/sluice/test/cluster"
)

// The identity deploy/ gives Sluice, and the roles it binds.
const (
	deploySA      = "system:serviceaccount:sluice-system:sluice"
	deployEnvRole = "sluice-environment"
)

// TestDeployLeastPrivilege: `kubectl apply -k deploy/` is accepted by the API
// server, and the real daemon, impersonating deploy/'s ServiceAccount with
// only deploy/'s RBAC, drains the article's queue (a pass, a failure
// reverted) and refuses a commit's ClusterRoleBinding to cluster-admin
// (failed, reverted, never created). Then each rule of deploy/'s roles is
// removed in turn: Sluice stops with an error naming what it lacks, pushes
// no revert and records no failed verdict.
func TestDeployLeastPrivilege(t *testing.T) {
	c := cluster.Require(t)
	admin := c.Client(t)
	ctx := t.Context()
	kubectl := kubectlPath(t)

	out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", c.Kubeconfig, "apply", "--server-side", "-k", filepath.Join(repoRoot(t), "deploy")).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl apply -k deploy/: %v\n%s", err, out)
	}
	t.Logf("kubectl apply -k deploy/:\n%s", out)
	d, err := admin.AppsV1().Deployments("sluice-system").Get(ctx, "sluice", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sc := d.Spec.Template.Spec.Containers[0].SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("deploy/'s container has no read-only root file system")
	}
	// The namespace enforces the restricted Pod Security level: a Pod
	// exists only if the Deployment's security context meets it.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
		pods, err := admin.CoreV1().Pods("sluice-system").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=sluice"})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) > 0 {
			break
		}
		if time.Now().After(deadline) {
			var why []string
			if rs, err := admin.AppsV1().ReplicaSets("sluice-system").List(ctx, metav1.ListOptions{}); err == nil {
				for _, r := range rs.Items {
					for _, c := range r.Status.Conditions {
						why = append(why, c.Message)
					}
				}
			}
			t.Fatalf("deploy/'s Deployment made no Pod within a minute: %v", why)
		}
	}
	kubeconfig := impersonating(t, c.Kubeconfig, deploySA)

	// The article's queue, and a commit that tries to make itself cluster-admin.
	s := newScenario(t, scenarioOptions{})
	a3 := s.push("Berlin", "bump A to v3", pair(version("a", "v3"))...)
	b4 := s.push("London", "bump B to v4", pair(version("b", "v4"))...)
	crbName := "escalate-" + s.gate
	kust := strings.Replace(s.file("main", "environments/staging/kustomization.yaml"), "  - tests/z-checks-a.yaml\n", "  - tests/z-checks-a.yaml\n  - escalate.yaml\n", 1)
	crb := s.push("Mallory", "grant the staging default account cluster-admin",
		"environments/staging/kustomization.yaml", kust,
		"environments/staging/escalate.yaml", "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: "+crbName+"\n"+
			"roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\n"+
			"subjects:\n  - {kind: ServiceAccount, name: default, namespace: staging}\n")

	if r := runAs(s, kubeconfig); r.code != 0 {
		t.Fatalf("sluice run --once as %s exited %d", deploySA, r.code)
	}
	s.mustNote(a3, "passed")
	if rec := s.mustNote(b4, "failed"); !strings.Contains(rec.Reason, "a-checks-b") {
		t.Errorf("b4 failed for another reason: %s", rec.Reason)
	}
	rec := s.mustNote(crb, "failed")
	if !strings.Contains(rec.Reason, `cannot patch resource "clusterrolebindings"`) {
		t.Errorf("the ClusterRoleBinding commit failed for another reason than RBAC: %s", rec.Reason)
	}
	for _, h := range []string{b4, crb} {
		if r, _ := s.note(h); r.RevertCommit.IsZero() {
			t.Errorf("%s failed without a revert", h[:7])
		}
	}
	if strings.Contains(s.file("staging", "environments/staging/kustomization.yaml"), "escalate.yaml") {
		t.Errorf("staging holds the ClusterRoleBinding commit")
	}
	got, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", c.Kubeconfig, "get", "clusterrolebinding", crbName).CombinedOutput()
	if err == nil || !strings.Contains(string(got), "NotFound") {
		t.Errorf("kubectl get clusterrolebinding %s: %v\n%s\nwant NotFound: it must never be created", crbName, err, got)
	}

	// Each rule removed in turn. The authorizer's view is checked with a
	// SubjectAccessReview before Sluice runs, so no row races the RBAC cache.
	scratch := scratchBinding(t, admin)
	rows := []struct {
		name   string
		role   string // "ClusterRole/<name>" or "Role/<name>"
		rule   int
		verb   string                     // only this verb of the rule; all of it when empty
		check  authzv1.ResourceAttributes // what the rule allows
		before func(t *testing.T, s *scenario)
		want   string
	}{
		// Every verb on namespaces, one at a time.
		{name: "get namespaces", role: "ClusterRole/sluice", rule: 0, verb: "get",
			check: authzv1.ResourceAttributes{Verb: "get", Resource: "namespaces", Name: "x"},
			want:  `cannot get resource "namespaces"`},
		{name: "list namespaces", role: "ClusterRole/sluice", rule: 0, verb: "list",
			check: authzv1.ResourceAttributes{Verb: "list", Resource: "namespaces"},
			want:  `cannot list resource "namespaces"`},
		{name: "create namespaces", role: "ClusterRole/sluice", rule: 0, verb: "create",
			check: authzv1.ResourceAttributes{Verb: "create", Resource: "namespaces"},
			want:  `cannot create resource "namespaces"`},
		{name: "patch namespaces", role: "ClusterRole/sluice", rule: 0, verb: "patch",
			check: authzv1.ResourceAttributes{Verb: "patch", Resource: "namespaces", Name: "x"},
			want:  `cannot patch resource "namespaces"`},
		// A test namespace holding Sluice's RoleBinding can be deleted
		// through it; one left without (Sluice stopped before binding)
		// needs this verb.
		{name: "delete namespaces", role: "ClusterRole/sluice", rule: 0, verb: "delete",
			check: authzv1.ResourceAttributes{Verb: "delete", Resource: "namespaces", Name: "x"},
			before: func(t *testing.T, s *scenario) {
				leftover := "sluice-" + s.gate + "-0000001"
				ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: leftover, Labels: map[string]string{
					manifests.LabelManagedBy: manifests.ManagedByValue, manifests.LabelGate: s.gate}}}
				if _, err := admin.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = admin.CoreV1().Namespaces().Delete(context.Background(), leftover, metav1.DeleteOptions{}) })
			},
			want: `cannot delete resource "namespaces"`},
		{name: "create rolebindings", role: "ClusterRole/sluice", rule: 1,
			check: authzv1.ResourceAttributes{Namespace: "default", Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "rolebindings"},
			want:  "Sluice's own RBAC is short"},
		{name: "bind sluice-environment", role: "ClusterRole/sluice", rule: 2,
			check: authzv1.ResourceAttributes{Namespace: "default", Verb: "bind", Group: "rbac.authorization.k8s.io", Resource: "clusterroles", Name: deployEnvRole},
			want:  "Sluice's own RBAC is short"},
		{name: "environment", role: "ClusterRole/" + deployEnvRole, rule: 0,
			check: authzv1.ResourceAttributes{Namespace: scratch, Verb: "create", Resource: "configmaps"},
			want:  "grants Sluice nothing"},
		{name: "get the verdict key", role: "Role/sluice", rule: 0,
			check: authzv1.ResourceAttributes{Namespace: "sluice-system", Verb: "get", Resource: "secrets", Name: "sluice-verdict-key"},
			want:  "verdict key: read Secret"},
		{name: "create the verdict key", role: "Role/sluice", rule: 1,
			check: authzv1.ResourceAttributes{Namespace: "sluice-system", Verb: "create", Resource: "secrets"},
			before: func(t *testing.T, _ *scenario) {
				err := admin.CoreV1().Secrets("sluice-system").Delete(ctx, "sluice-verdict-key", metav1.DeleteOptions{})
				if err != nil && !apierrors.IsNotFound(err) {
					t.Fatal(err)
				}
			},
			want: "verdict key: create Secret"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			restore := removeRule(t, admin, row.role, row.rule, row.verb)
			waitAllowed(t, admin, row.check, false)
			defer func() {
				restore()
				waitAllowed(t, admin, row.check, true)
			}()
			s := newScenario(t, scenarioOptions{onceAttempts: 1})
			if row.before != nil {
				row.before(t, s)
			}
			main, staging := s.tip("main"), s.tip("staging")
			sha := s.push("Berlin", "bump A to v3", pair(version("a", "v3"))...)
			r := runAs(s, kubeconfig)
			if r.code == 0 {
				t.Fatalf("sluice run --once exited 0 without the rule")
			}
			if !strings.Contains(r.stderr, row.want) {
				t.Errorf("stderr does not say %q", row.want)
			}
			if rec, ok := s.note(sha); ok && rec.Verdict != "error" {
				t.Errorf("verdict %s (%s), want none or error", rec.Verdict, rec.Reason)
			}
			if got := s.tip("main"); got != sha {
				t.Errorf("main moved from %s to %s (a revert?); it was %s before the push", sha[:7], got[:7], main[:7])
			}
			if got := s.tip("staging"); got != staging {
				t.Errorf("staging moved to %s", got[:7])
			}
		})
	}
}

func kubectlPath(t *testing.T) string {
	t.Helper()
	dir, err := cluster.ToolsDir("")
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "kubectl")
}

// impersonating writes a copy of kubeconfig whose user acts as user (`as:`).
func impersonating(t *testing.T, kubeconfig, user string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range cfg.AuthInfos {
		a.Impersonate = user
	}
	path := filepath.Join(t.TempDir(), "impersonating.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// runAs runs `sluice run --once` with kubeconfig and deploy/'s environment role.
func runAs(s *scenario, kubeconfig string) result {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sluiceBin, "run", "--once", "--config", s.config, "--kubeconfig", kubeconfig,
		"--environment-role", deployEnvRole, "--progress", "always")
	cmd.Env = os.Environ()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			s.t.Fatalf("run sluice: %v", err)
		}
		r.code = ee.ExitCode()
	}
	s.t.Logf("sluice run --once as %s (exit %d)\n--- stdout\n%s--- stderr\n%s", deploySA, r.code, r.stdout, r.stderr)
	return r
}

// scratchBinding binds deploy/'s ServiceAccount to the environment role in a
// namespace of the test's, so the authorizer's view of that role can be asked.
func scratchBinding(t *testing.T, admin kubernetes.Interface) string {
	t.Helper()
	ctx := t.Context()
	ns := "deploy-scratch-" + randHex(3)
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: deployEnvRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "sluice", Namespace: "sluice-system"}},
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return ns
}

// removeRule deletes rule i of role ("ClusterRole/x" or "Role/x", the latter
// in sluice-system), or only its verb, and returns what puts it back.
func removeRule(t *testing.T, admin kubernetes.Interface, role string, i int, verb string) (restore func()) {
	t.Helper()
	ctx := context.Background()
	kind, name, _ := strings.Cut(role, "/")
	if kind == "ClusterRole" {
		cr, err := admin.RbacV1().ClusterRoles().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rules := cr.Rules
		cr.Rules = without(t, rules, i, verb)
		if _, err := admin.RbacV1().ClusterRoles().Update(ctx, cr, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return func() {
			cr, err := admin.RbacV1().ClusterRoles().Get(ctx, name, metav1.GetOptions{})
			if err == nil {
				cr.Rules = rules
				_, err = admin.RbacV1().ClusterRoles().Update(ctx, cr, metav1.UpdateOptions{})
			}
			if err != nil {
				t.Fatalf("restore %s: %v", role, err)
			}
		}
	}
	r, err := admin.RbacV1().Roles("sluice-system").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rules := r.Rules
	r.Rules = without(t, rules, i, verb)
	if _, err := admin.RbacV1().Roles("sluice-system").Update(ctx, r, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return func() {
		r, err := admin.RbacV1().Roles("sluice-system").Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			r.Rules = rules
			_, err = admin.RbacV1().Roles("sluice-system").Update(ctx, r, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Fatalf("restore %s: %v", role, err)
		}
	}
}

// without is rules without rule i, or without verb in rule i.
func without(t *testing.T, rules []rbacv1.PolicyRule, i int, verb string) []rbacv1.PolicyRule {
	t.Helper()
	out := append([]rbacv1.PolicyRule(nil), rules[:i]...)
	if verb != "" {
		r := *rules[i].DeepCopy()
		r.Verbs = slices.DeleteFunc(r.Verbs, func(v string) bool { return v == verb })
		if len(r.Verbs) == len(rules[i].Verbs) {
			t.Fatalf("rule %d has no verb %s: %+v", i, verb, rules[i])
		}
		out = append(out, r)
	}
	return append(out, rules[i+1:]...)
}

// waitAllowed waits until the authorizer answers want for deploy/'s
// ServiceAccount doing attrs (its RBAC cache follows role changes).
func waitAllowed(t *testing.T, admin kubernetes.Interface, attrs authzv1.ResourceAttributes, want bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User:               deploySA,
			Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:sluice-system", "system:authenticated"},
			ResourceAttributes: &attrs,
		}}
		got, err := admin.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Allowed == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the authorizer still answers allowed=%v for %s %+v", got.Status.Allowed, deploySA, attrs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
