package manifests

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// checkout writes files (a value "-> target" is a symlink) into a directory,
// as git would check them out, and returns it.
func checkout(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, data := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(data, "-> "); ok {
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// kustomizeOnDisk is `kustomize build --load-restrictor LoadRestrictionsNone`
// of dir in a checkout: the image the branch gives anyone who builds it.
func kustomizeOnDisk(t *testing.T, root, dir string) ([]map[string]any, error) {
	t.Helper()
	k := krusty.MakeKustomizer(&krusty.Options{
		LoadRestrictions: types.LoadRestrictionsNone,
		PluginConfig:     types.DisabledPluginConfig(),
	})
	m, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(root, dir))
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	for _, r := range m.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var obj map[string]any
		if err := json.Unmarshal(b, &obj); err != nil {
			t.Fatal(err)
		}
		out = append(out, obj)
	}
	return out, nil
}

// TestRenderDirectorySymlinksAsACheckout renders kustomizations reached
// through directory symlinks both from a checkout on disk (kustomize resolves
// the symlinks of its directories there) and with Sluice: Sluice renders the
// same image, or refuses with a reason naming the symlink where its
// in-memory render would read other files than the checkout.
func TestRenderDirectorySymlinksAsACheckout(t *testing.T) {
	cm := func(name, from string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\ndata:\n  from: " + from + "\n"
	}
	const kfile = "environments/staging/kustomization.yaml"
	tests := []struct {
		name  string
		files map[string]string
		want  string // "" for the same image as the checkout, else in the RenderError
	}{
		{
			name: "a symlinked base whose paths stay inside it",
			files: map[string]string{
				kfile:                                 "resources:\n- base\n",
				"environments/staging/base":           "-> ../../bases/shared",
				"bases/shared/kustomization.yaml":     "resources:\n- cm.yaml\n- sub\n",
				"bases/shared/cm.yaml":                cm("shared", "target"),
				"bases/shared/sub/kustomization.yaml": "resources:\n- cm.yaml\n",
				"bases/shared/sub/cm.yaml":            cm("sub", "target"),
			},
		},
		{
			name: "a symlinked base whose path above it names the same file both ways",
			files: map[string]string{
				kfile:                       "resources:\n- base\n",
				"environments/staging/base": "-> shared",
				"environments/staging/shared/kustomization.yaml": "resources:\n- ../cm.yaml\n",
				"environments/staging/cm.yaml":                   cm("up", "staging"),
			},
		},
		{
			name: "a symlinked base that reads a file above it: two files",
			files: map[string]string{
				kfile:                                 "resources:\n- base\n",
				"environments/staging/base":           "-> ../../bases/shared",
				"bases/shared/kustomization.yaml":     "resources:\n- ../common/cm.yaml\n",
				"bases/common/cm.yaml":                cm("common", "checkout"),
				"environments/staging/common/cm.yaml": cm("common", "link"),
			},
			want: `environments/staging/base/kustomization.yaml: resource "../common/cm.yaml" is read from bases/common/cm.yaml in a checkout, where symlink environments/staging/base leads, but from environments/staging/common/cm.yaml in Sluice's render`,
		},
		{
			name: "a symlinked base that reads a file above it: only the checkout has it",
			files: map[string]string{
				kfile:                             "resources:\n- base\n",
				"environments/staging/base":       "-> ../../bases/shared",
				"bases/shared/kustomization.yaml": "resources:\n- ../common\n",
				"bases/common/kustomization.yaml": "resources:\n- cm.yaml\n",
				"bases/common/cm.yaml":            cm("common", "checkout"),
			},
			want: `environments/staging/base/kustomization.yaml: resource "../common" is read from bases/common in a checkout, where symlink environments/staging/base leads`,
		},
		{
			name: "the gate's directory is a symlink and climbs out of it",
			files: map[string]string{
				"environments/staging":                 "-> ../deploy/eu/staging",
				"deploy/eu/staging/kustomization.yaml": "resources:\n- ../../../bases/app\n",
				"bases/app/kustomization.yaml":         "resources:\n- cm.yaml\n",
				"bases/app/cm.yaml":                    cm("app", "checkout"),
			},
			want: `environments/staging/kustomization.yaml: resource "../../../bases/app" is read from bases/app in a checkout, where symlink environments/staging leads`,
		},
		{
			name: "a symlinked component with a patch above it",
			files: map[string]string{
				kfile:                                 "resources:\n- cm.yaml\ncomponents:\n- debug\n",
				"environments/staging/cm.yaml":        cm("web", "base"),
				"environments/staging/debug":          "-> ../../components/debug",
				"components/debug/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\npatches:\n- path: ../patch.yaml\n",
				"components/patch.yaml":               cm("web", "checkout"),
				"environments/patch.yaml":             cm("web", "link"),
			},
			want: `environments/staging/debug/kustomization.yaml: patch "../patch.yaml" is read from components/patch.yaml in a checkout, where symlink environments/staging/debug leads`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := checkout(t, tt.files)
			image, err := kustomizeOnDisk(t, root, "environments/staging")
			if err != nil {
				t.Fatalf("kustomize build of the checkout: %v", err)
			}
			objs, err := Render(context.Background(), os.DirFS(root), "environments/staging", RenderOptions{})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Render: %v", err)
				}
				if diff := cmp.Diff(image, maps(objs)); diff != "" {
					t.Errorf("Sluice's render differs from the checkout's (-checkout +sluice):\n%s", diff)
				}
				return
			}
			var re *RenderError
			if !errors.As(err, &re) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Render = %v (%d objects)\nwant a RenderError with %q\nthe checkout renders %v", err, len(objs), tt.want, image)
			}
		})
	}
}
