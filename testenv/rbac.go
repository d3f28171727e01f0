package testenv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sluice-gitops/sluice/manifests"
)

// RoleBindingName is the RoleBinding Sluice makes in each test namespace
// when it runs with an environment role (UseEnvironmentRole).
const RoleBindingName = "sluice-environment"

// BindingWait bounds how long Sluice waits for the API server's authorizer
// to honour the RoleBinding it just made.
const BindingWait = 10 * time.Second

// environmentRole is what UseEnvironmentRole resolved.
type environmentRole struct {
	role    string         // the ClusterRole bound in each test namespace
	subject rbacv1.Subject // Sluice's own identity
}

// UseEnvironmentRole makes Test bind Sluice's own identity (asked of the
// API server with a SelfSubjectReview) to the ClusterRole role inside each
// test namespace, right after creating it, and wait until the authorizer
// honours the binding before anything is applied. Sluice then needs no
// write access outside its test namespaces: everything an environment
// contains is applied through that binding, and a cluster-scoped object is
// refused by RBAC. An empty role turns this off (Sluice applies with
// whatever its identity holds cluster-wide).
func (k *Cluster) UseEnvironmentRole(ctx context.Context, role string) error {
	if role == "" {
		k.envRole = nil
		return nil
	}
	review := &authnv1.SelfSubjectReview{}
	if err := k.client.Create(ctx, review); err != nil {
		return fmt.Errorf("environment role %s: ask the API server who Sluice is (SelfSubjectReview, authentication.k8s.io/v1): %w", role, err)
	}
	subject, err := subjectOf(review.Status.UserInfo.Username)
	if err != nil {
		return fmt.Errorf("environment role %s: %w", role, err)
	}
	k.envRole = &environmentRole{role: role, subject: subject}
	return nil
}

// serviceAccountPrefix starts the user name of every ServiceAccount.
const serviceAccountPrefix = "system:serviceaccount:"

// subjectOf is the RBAC subject of a user name: a ServiceAccount for
// "system:serviceaccount:<namespace>:<name>", else a User.
func subjectOf(user string) (rbacv1.Subject, error) {
	if user == "" {
		return rbacv1.Subject{}, errors.New("the API server does not say who Sluice is (empty user name)")
	}
	if rest, ok := strings.CutPrefix(user, serviceAccountPrefix); ok {
		ns, name, ok := strings.Cut(rest, ":")
		if !ok || ns == "" || name == "" || strings.Contains(name, ":") {
			return rbacv1.Subject{}, fmt.Errorf("user name %q is not a ServiceAccount's (%s<namespace>:<name>)", user, serviceAccountPrefix)
		}
		return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}, nil
	}
	return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}, nil
}

// bindEnvironment makes the RoleBinding of the environment role in the
// test namespace ns has just been created as, and waits until the
// authorizer honours it. Every error is Sluice's own (infrastructure):
// the namespace is removed again so nothing is left behind.
func (k *Cluster) bindEnvironment(ctx context.Context, ns *unstructured.Unstructured) (err error) {
	er := k.envRole
	if er == nil {
		return nil
	}
	name := ns.GetName()
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_ = k.deleteNamespace(cctx, ns.GetLabels()[manifests.LabelGate], name)
		}
	}()
	before, err := k.rulesIn(ctx, name)
	if err != nil {
		return err
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{
			Name:      RoleBindingName,
			Namespace: name,
			Labels: map[string]string{
				manifests.LabelManagedBy: manifests.ManagedByValue,
				manifests.LabelGate:      ns.GetLabels()[manifests.LabelGate],
			},
		},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: er.role},
		Subjects: []rbacv1.Subject{er.subject},
	}
	if err := k.client.Create(ctx, rb); err != nil && !apierrors.IsAlreadyExists(err) {
		return ownRBAC(fmt.Sprintf("create RoleBinding %s/%s to ClusterRole %s", name, RoleBindingName, er.role),
			fmt.Sprintf("`create` on rolebindings (rbac.authorization.k8s.io) and `bind` on clusterroles/%s", er.role), err)
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, BindingWait)
	defer cancel()
	for {
		n, err := k.rulesIn(wctx, name)
		if err == nil && n > before {
			return nil
		}
		if err != nil && wctx.Err() == nil {
			return err
		}
		select {
		case <-wctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return ctx.Err()
			}
			return fmt.Errorf("RoleBinding %s/%s to ClusterRole %s grants Sluice nothing after %s: does the ClusterRole exist and hold rules?", name, RoleBindingName, er.role, time.Since(start).Round(time.Second))
		case <-time.After(k.poll):
		}
	}
}

// rulesIn counts the resource rules the authorizer grants Sluice in ns
// (SelfSubjectRulesReview, which every authenticated user may ask): it
// grows once the authorizer honours a new RoleBinding there.
func (k *Cluster) rulesIn(ctx context.Context, ns string) (int, error) {
	review := &authzv1.SelfSubjectRulesReview{Spec: authzv1.SelfSubjectRulesReviewSpec{Namespace: ns}}
	if err := k.client.Create(ctx, review); err != nil {
		return 0, fmt.Errorf("ask the API server what Sluice may do in %s (SelfSubjectRulesReview): %w", ns, err)
	}
	return len(review.Status.ResourceRules), nil
}

// forbidden classifies a Forbidden answer to applying (or dry-running) the
// commit's objects. Quota is the infrastructure's; an admission policy's
// denial is the commit's; an RBAC refusal ("cannot ...") of one of the
// commit's objects is left to a control run (the last passed candidate
// applied with the same permissions: it passes → the commit asked for
// something Sluice may not do, such as a ClusterRoleBinding, `failed`; it
// fails too → Sluice's permissions are short, `error`). A refusal of
// Sluice's own operation on its test namespace is the infrastructure's.
func forbidden(step string, err error, msg string) error {
	if strings.Contains(msg, "exceeded quota") {
		return err
	}
	if !strings.Contains(msg, "cannot ") {
		return faultf(step, "rejected by the API server: %s", msg)
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		if d := status.Status().Details; d != nil && d.Group == "" && d.Kind == "namespaces" {
			return ownRBAC("test namespace", "get, list, create, patch and delete on namespaces", err)
		}
	}
	return &UnrecognisedError{Step: step, Err: err}
}

// ownRBAC is an infrastructure error saying which permission Sluice lacks.
func ownRBAC(op, needs string, err error) error {
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("%s: Sluice's own RBAC is short (it needs %s): %w", op, needs, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}
