package manifests

import (
	"context"
	"io/fs"
	stdmaps "maps"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// readsTree is an overlay with a base, a patch reached through a symlink,
// a symlinked directory and documentation beside all of it.
var readsTree = map[string]string{
	"README.md": "# demo\n",
	"environments/staging/kustomization.yaml": `resources:
- ../../base
- ../../shared/cm
- extra.yaml
patches:
- path: patch.yaml
`,
	"environments/staging/extra.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n",
	"environments/staging/patch.yaml": "-> ../../patches/replicas.yaml",
	"environments/staging/NOTES.md":   "notes\n",
	"patches/replicas.yaml":           "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n",
	"patches/README.md":               "patches\n",
	"base/kustomization.yaml":         "resources:\n- deployment.yaml\n",
	"base/deployment.yaml":            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n",
	"base/README.md":                  "base\n",
	"shared/cm":                       "-> ../configmaps",
	"configmaps/kustomization.yaml":   "resources:\n- cm.yaml\n",
	"configmaps/cm.yaml":              "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n",
	"docs/guide.md":                   "guide\n",
}

// TestRenderWithReadsRecordsWhatTheLoaderLooksAt: the files read, the
// kustomization names probed and found absent, each symlink and the path
// it leads to, and the directories passed through.
func TestRenderWithReadsRecordsWhatTheLoaderLooksAt(t *testing.T) {
	objs, reads, err := RenderWithReads(t.Context(), repo(readsTree), "environments/staging", RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 3 {
		t.Fatalf("rendered %d objects, want 3", len(objs))
	}
	want := ReadSet{
		Paths: []string{
			"base/Kustomization", "base/deployment.yaml", "base/kustomization.yaml", "base/kustomization.yml",
			"configmaps/Kustomization", "configmaps/cm.yaml", "configmaps/kustomization.yaml", "configmaps/kustomization.yml",
			"environments/staging/Kustomization", "environments/staging/extra.yaml",
			"environments/staging/kustomization.yaml", "environments/staging/kustomization.yml",
			"environments/staging/patch.yaml",
			"patches/replicas.yaml",
			// The symlink, not the paths through it: the loader resolves
			// them itself and reads configmaps/ instead.
			"shared/cm",
		},
		Dirs: []string{"base", "configmaps", "environments", "environments/staging", "patches", "shared"},
	}
	if diff := cmp.Diff(want, reads); diff != "" {
		t.Errorf("reads (-want +got):\n%s", diff)
	}
}

// TestReadSetIsComplete: changing, removing or adding a file anywhere the
// read set does not cover leaves the render as it was, for every file of
// the tree and for new files beside each of them.
func TestReadSetIsComplete(t *testing.T) {
	const dir = "environments/staging"
	objs, reads, err := RenderWithReads(t.Context(), repo(readsTree), dir, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	digest := Digest(objs)
	// covered mirrors the rule ReadSet documents: a change at, above or
	// below a Paths entry, or at or above a Dirs entry.
	covered := func(c string) bool {
		for _, p := range reads.Paths {
			if c == p || strings.HasPrefix(p, c+"/") || strings.HasPrefix(c, p+"/") {
				return true
			}
		}
		for _, d := range reads.Dirs {
			if c == d || strings.HasPrefix(d, c+"/") {
				return true
			}
		}
		return false
	}
	type change struct {
		name string
		path string
		data string // "" removes
	}
	var changes []change
	for _, p := range slices.Sorted(stdmaps.Keys(readsTree)) {
		changes = append(changes,
			change{"change " + p, p, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: changed\n"},
			change{"remove " + p, p, ""},
			change{"add beside " + p, p + "-new.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: new\n"},
		)
	}
	dirs := map[string]bool{".": true}
	for p := range readsTree {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for _, d := range slices.Sorted(stdmaps.Keys(dirs)) {
		for _, name := range []string{"kustomization.yaml", "kustomization.yml", "Kustomization"} {
			changes = append(changes, change{"add " + name + " in " + d, path.Join(d, name), "resources: []\n"})
		}
		if d != "." {
			changes = append(changes, change{"replace " + d + " by a file", d, "a file now\n"})
		}
	}
	skipped := 0
	for _, c := range changes {
		if covered(c.path) {
			continue
		}
		skipped++
		t.Run(c.name, func(t *testing.T) {
			files := stdmaps.Clone(readsTree)
			switch {
			case c.data == "":
				delete(files, c.path)
			case dirs[c.path]:
				for p := range files {
					if strings.HasPrefix(p, c.path+"/") {
						delete(files, p)
					}
				}
				files[c.path] = c.data
			default:
				files[c.path] = c.data
			}
			got, err := Render(context.Background(), repo(files), dir, RenderOptions{})
			if err != nil {
				t.Fatalf("a change outside the read set broke the render: %v", err)
			}
			if d := Digest(got); d != digest {
				t.Errorf("a change outside the read set changed the render: %s, was %s", d, digest)
			}
		})
	}
	// The README, NOTES.md and guide changes at least must have been tried.
	if skipped < 12 {
		t.Errorf("only %d changes fell outside the read set; the test proves little", skipped)
	}
}

// TestRenderWithReadsNeedsSymlinks: a tree that cannot report symlinks
// follows them by itself, so what the loader asked for is not known to be
// what it read: the set is empty, which means unknown.
func TestRenderWithReadsNeedsSymlinks(t *testing.T) {
	_, reads, err := RenderWithReads(t.Context(), noLinks{repo(map[string]string{
		"kustomization.yaml": "resources:\n- cm.yaml\n",
		"cm.yaml":            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n",
	})}, ".", RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reads.Empty() {
		t.Errorf("reads = %+v, want empty (unknown)", reads)
	}
}

// noLinks hides a tree's Lstat and ReadLink.
type noLinks struct{ fs.FS }

// TestRecorderNotesHowAPathWasRead: a directory listed or opened is a
// Paths entry, one only stat'ed a Dirs entry, unless a symlink led there.
func TestRecorderNotesHowAPathWasRead(t *testing.T) {
	rec := newRecorder(repo(map[string]string{
		"listed/a.yaml": "a", "opened/a.yaml": "a", "statted/a.yaml": "a",
		"link": "-> statted", "lstatted/a.yaml": "a",
	}))
	f := rec.fsys()
	_, _ = fs.ReadDir(f, "listed")
	if o, err := f.Open("opened"); err == nil {
		o.Close()
	}
	_, _ = fs.Stat(f, "statted")
	_, _ = fs.Stat(f, "link")
	_, _ = fs.Lstat(f, "lstatted")
	_, _ = fs.Stat(f, "absent/kustomization.yaml")
	want := ReadSet{
		Paths: []string{"absent/kustomization.yaml", "link", "listed", "opened"},
		Dirs:  []string{"lstatted", "statted"},
	}
	if diff := cmp.Diff(want, rec.set()); diff != "" {
		t.Errorf("reads (-want +got):\n%s", diff)
	}
}
