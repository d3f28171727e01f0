package manifests

import (
	"regexp"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestDigest(t *testing.T) {
	base := mustRender(t, repo(staging), "environments/staging")
	reversed := slices.Clone(base)
	slices.Reverse(reversed)

	// The same objects written differently: other key order, flow style,
	// comments, quoting, an anchor.
	reformatted := with(map[string]string{
		"bases/app/service.yaml": `
# The web service.
kind: Service
apiVersion: v1
metadata: {name: web}   # same name
spec:
  ports: [{targetPort: 8080, port: 80}]
  selector: &sel
    "app": web
`,
	})
	bumped := with(map[string]string{
		"environments/staging/kustomization.yaml": replace(t, staging["environments/staging/kustomization.yaml"], `newTag: "1.2.3"`, `newTag: "1.2.4"`),
	})

	tests := []struct {
		name string
		objs []*unstructured.Unstructured
		same bool
	}{
		{name: "the same objects in reverse order", objs: reversed, same: true},
		{name: "the same objects from reformatted YAML", objs: mustRender(t, repo(reformatted), "environments/staging"), same: true},
		{name: "another image tag", objs: mustRender(t, repo(bumped), "environments/staging"), same: false},
		{name: "one object fewer", objs: base[1:], same: false},
	}
	want := Digest(base)
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(want) {
		t.Fatalf("Digest = %q, want sha256:<64 hex>", want)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Digest(tt.objs)
			if (got == want) != tt.same {
				t.Errorf("Digest = %s, base %s; want same = %v", got, want, tt.same)
			}
		})
	}
}

func replace(t *testing.T, s, old, new string) string {
	t.Helper()
	out := regexp.MustCompile(regexp.QuoteMeta(old)).ReplaceAllLiteralString(s, new)
	if out == s {
		t.Fatalf("%q not found", old)
	}
	return out
}
