package testenv

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// subjectOf turns the user name a SelfSubjectReview answers into the
// subject of Sluice's RoleBinding.
func TestSubjectOf(t *testing.T) {
	tests := []struct {
		user    string
		want    rbacv1.Subject
		wantErr string
	}{
		{user: "system:serviceaccount:sluice-system:sluice", want: rbacv1.Subject{Kind: "ServiceAccount", Namespace: "sluice-system", Name: "sluice"}},
		{user: "alice@example.com", want: rbacv1.Subject{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "alice@example.com"}},
		{user: "", wantErr: "empty user name"},
		{user: "system:serviceaccount:sluice-system", wantErr: "not a ServiceAccount's"},
		{user: "system:serviceaccount::sluice", wantErr: "not a ServiceAccount's"},
		{user: "system:serviceaccount:a:b:c", wantErr: "not a ServiceAccount's"},
	}
	for _, tt := range tests {
		got, err := subjectOf(tt.user)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("subjectOf(%q) = %+v, %v; want an error saying %q", tt.user, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("subjectOf(%q) = %+v, %v; want %+v", tt.user, got, err, tt.want)
		}
	}
}

// forbidden: quota and Sluice's own namespace work are the infrastructure's,
// an admission denial is the commit's, and an RBAC refusal of a commit's
// object is for the control run to judge.
func TestForbiddenClassification(t *testing.T) {
	rbac := func(gr schema.GroupResource, name, verb string) error {
		return apierrors.NewForbidden(gr, name, fmt.Errorf(`User "system:serviceaccount:sluice-system:sluice" cannot %s resource %q in API group %q at the cluster scope`, verb, gr.Resource, gr.Group))
	}
	tests := []struct {
		name string
		err  error
		want string // fault, unrecognised or infrastructure
		says string
	}{
		{name: "a commit's ClusterRoleBinding", err: fmt.Errorf("ClusterRoleBinding/x dry-run failed: %w", rbac(schema.GroupResource{Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings"}, "x", "patch")), want: "unrecognised"},
		{name: "a commit's Deployment", err: rbac(schema.GroupResource{Group: "apps", Resource: "deployments"}, "a", "patch"), want: "unrecognised"},
		{name: "the test namespace", err: rbac(schema.GroupResource{Resource: "namespaces"}, "sluice-stg-abc", "patch"), want: "infrastructure", says: "Sluice's own RBAC is short (it needs get, list, create, patch and delete on namespaces)"},
		{name: "quota", err: apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "p", errors.New("exceeded quota: q, requested: pods=1")), want: "infrastructure"},
		{name: "admission", err: apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "p", errors.New("admission webhook \"policy\" denied the request: privileged")), want: "fault"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := forbidden(StepApply, tt.err, tt.err.Error())
			var ue *UnrecognisedError
			got := "infrastructure"
			switch {
			case IsFault(err):
				got = "fault"
			case errors.As(err, &ue):
				got = "unrecognised"
			}
			if got != tt.want {
				t.Errorf("%v: %s, want %s", err, got, tt.want)
			}
			if !strings.Contains(err.Error(), tt.says) {
				t.Errorf("%v does not say %q", err, tt.says)
			}
		})
	}
}
