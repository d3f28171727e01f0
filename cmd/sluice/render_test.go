package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-gitops/sluice/manifests"
	"github.com/sluice-gitops/sluice/test/gitserver"
)

// renderConfig is a configuration whose staging gate renders
// environments/staging of url's main branch.
func renderConfig(t *testing.T, url string) string {
	t.Helper()
	return writeConfig(t, fmt.Sprintf("repository:\n  url: %s\n", url)+stagingGate)
}

// copyArticle writes examples/article's environments and services into w.
func copyArticle(t *testing.T, w *gitserver.Work) {
	t.Helper()
	src := filepath.Join("..", "..", "examples", "article")
	for _, top := range []string{"environments", "services"} {
		err := filepath.WalkDir(filepath.Join(src, top), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			w.Write(t, filepath.ToSlash(rel), string(b))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// asWorkingTree is what render --dir prints for a tree that render --commit
// printed out for commit: the same objects, in the namespace of a working
// tree and without the commit's label.
func asWorkingTree(out, commit string) string {
	out = strings.ReplaceAll(out, "sluice-staging-"+commit[:7], "sluice-staging-local")
	var keep []string
	for _, l := range strings.SplitAfter(out, "\n") {
		if strings.TrimSpace(l) != "sluice.dev/commit: "+commit {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "")
}

// TestRenderACommitAndItsWorkingTreeAlike: render prints the same objects
// for a commit of the source branch as for a checkout of it on disk: the
// article's staging, overlaid into the gate's test namespace, with the
// sluice.dev/ metadata a commit must not set removed; --commit picks the
// commit, by full hash or prefix, and without it the tip is rendered.
func TestRenderACommitAndItsWorkingTreeAlike(t *testing.T) {
	srv := gitserver.Start(t, gitserver.Options{})
	srv.CreateRepo(t, "desired")
	w := srv.Clone(t, "desired")
	copyArticle(t, w)
	// A commit may not set Sluice's own labels: another gate's, or a
	// keep-until that would keep its namespace forever.
	w.Write(t, "environments/staging/extra.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n  labels:\n    sluice.dev/gate: production\n    sluice.dev/keep-until: \"2999-01-01T00:00:00Z\"\ndata:\n  k: v\n")
	k, err := os.ReadFile(filepath.Join(w.Dir, "environments/staging/kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(t, "environments/staging/kustomization.yaml", strings.Replace(string(k), "resources:\n", "resources:\n  - extra.yaml\n", 1))
	first := w.Commit(t, "the article's staging")
	w.Write(t, "environments/staging/versions/b.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: b\nspec:\n  template:\n    spec:\n      containers:\n        - name: b\n          image: registry.example.com/b:v4\n")
	second := w.Commit(t, "Bump B to v4")
	if err := w.Push(t, "HEAD:refs/heads/main"); err != nil {
		t.Fatal(err)
	}
	cfg := renderConfig(t, srv.RepoURL("desired"))

	render := func(args ...string) string {
		t.Helper()
		code, stdout, stderr := sluice(t, append([]string{"render", "--config", cfg, "--gate", "staging"}, args...)...)
		if code != 0 || stderr != "" {
			t.Fatalf("render %v exited %d: %s", args, code, stderr)
		}
		return stdout
	}
	atFirst := render("--commit", first)
	atSecond := render("--commit", second)
	for name, got := range map[string]string{
		"the tip":                render(),
		"a prefix of the second": render("--commit", second[:7]),
	} {
		if diff := cmp.Diff(atSecond, got); diff != "" {
			t.Errorf("render of %s differs from --commit %s (-want +got):\n%s", name, second, diff)
		}
	}
	if diff := cmp.Diff(atFirst, render("--commit", strings.ToUpper(first[:10]))); diff != "" {
		t.Errorf("render of a prefix of the first commit differs (-want +got):\n%s", diff)
	}
	if !strings.Contains(atFirst, "registry.example.com/b:v3") || !strings.Contains(atSecond, "registry.example.com/b:v4") {
		t.Errorf("--commit does not pick the commit: B's image is not v3 at %s and v4 at %s", first[:7], second[:7])
	}

	// The working tree at each commit renders the same.
	w.Git(t, "checkout", "--quiet", first)
	if diff := cmp.Diff(asWorkingTree(atFirst, first), render("--dir", w.Dir)); diff != "" {
		t.Errorf("render --dir of a checkout of %s differs from --commit (-want +got):\n%s", first[:7], diff)
	}
	w.Git(t, "checkout", "--quiet", second)
	if diff := cmp.Diff(asWorkingTree(atSecond, second), render("--dir", w.Dir)); diff != "" {
		t.Errorf("render --dir of a checkout of %s differs from --commit (-want +got):\n%s", second[:7], diff)
	}

	// What is printed is the whole render: one document per object, the
	// render's Namespace replaced by the test namespace.
	objs, err := manifests.Render(t.Context(), os.DirFS(w.Dir), "environments/staging", manifests.RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(atSecond, "\n---\n")
	if len(docs) != len(objs) {
		t.Errorf("render printed %d documents, want %d (the render's objects, its Namespace replaced by the test namespace)", len(docs), len(objs))
	}
	ns := "sluice-staging-" + second[:7]
	for _, want := range []string{
		"# the test namespace; left out of the render: Namespace/staging\napiVersion: v1\nkind: Namespace\n",
		"  name: " + ns + "\n",
		"    sluice.dev/commit: " + second + "\n",
		"    sluice.dev/gate: staging\n",
		"# a test: applied once everything else is healthy\napiVersion: batch/v1\nkind: Job\n",
	} {
		if !strings.Contains(docs[0]+"\n---\n"+atSecond, want) {
			t.Errorf("render lacks %q:\n%s", want, atSecond)
		}
	}
	for _, bad := range []string{"namespace: staging\n", "sluice.dev/gate: production", "keep-until", manifests.AnnotationCreatedAt} {
		if strings.Contains(atSecond, bad) {
			t.Errorf("render holds %q:\n%s", bad, atSecond)
		}
	}
}

// TestRenderErrorsNameTheFile: a tree that does not render gives exit 1 and
// an error naming the file, from a commit as from a directory, and prints
// no objects.
func TestRenderErrorsNameTheFile(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{
			name:  "a kustomization naming a file that is not there",
			files: map[string]string{"environments/staging/kustomization.yaml": "resources:\n  - web.yaml\n  - missing.yaml\n"},
			want:  []string{"environments/staging/kustomization.yaml", "missing.yaml", "does not exist"},
		},
		{
			name:  "a kustomization with a key twice",
			files: map[string]string{"environments/staging/kustomization.yaml": "resources:\n  - web.yaml\nresources:\n  - web.yaml\n"},
			want:  []string{"environments/staging/kustomization.yaml", "resources"},
		},
		{
			name:  "a remote base",
			files: map[string]string{"environments/staging/kustomization.yaml": "resources:\n  - web.yaml\n  - https://example.com/base\n"},
			want:  []string{"environments/staging/kustomization.yaml", "https://example.com/base"},
		},
		{
			name:  "a patch that is not YAML",
			files: map[string]string{"environments/staging/kustomization.yaml": "resources:\n  - web.yaml\npatches:\n  - path: patch.yaml\n", "environments/staging/patch.yaml": "kind: [\n"},
			want:  []string{"environments/staging/patch.yaml"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newRepoFixture(t, gitserver.Options{})
			for p, content := range tt.files {
				f.work.Write(t, p, content)
			}
			broken := f.work.Commit(t, "break staging")
			if err := f.work.Push(t, "HEAD:refs/heads/main"); err != nil {
				t.Fatal(err)
			}
			cfg := renderConfig(t, f.srv.RepoURL("desired"))
			for _, from := range [][]string{{"--commit", broken}, {"--dir", f.work.Dir}} {
				code, stdout, stderr := sluice(t, append([]string{"render", "--config", cfg, "--gate", "staging"}, from...)...)
				if code != 1 || stdout != "" {
					t.Errorf("render %s exited %d with %q on stdout, want 1 and nothing", from[0], code, stdout)
				}
				for _, w := range tt.want {
					if !strings.Contains(stderr, w) {
						t.Errorf("render %s: stderr %q does not say %q", from[0], stderr, w)
					}
				}
			}
		})
	}
}

// TestRenderOfADirectoryStaysInIt: render --dir reads nothing outside the
// directory, through a symlink or otherwise; a symlink inside it is
// followed.
func TestRenderOfADirectoryStaysInIt(t *testing.T) {
	const canary = "canary-from-outside"
	outsideFile := func(t *testing.T) string {
		p := filepath.Join(t.TempDir(), "web.yaml")
		writeFile(t, p, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  secret: "+canary+"\n")
		return p
	}
	web := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  version: v1\n"
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		wantErr []string // empty: renders
	}{
		{
			name: "a symlink inside the directory is followed",
			setup: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "shared/web.yaml"), web)
				symlink(t, "../../shared/web.yaml", filepath.Join(dir, "environments/staging/web.yaml"))
			},
		},
		{
			name: "a relative symlink out of the directory",
			setup: func(t *testing.T, dir string) {
				out := outsideFile(t)
				rel, err := filepath.Rel(filepath.Join(dir, "environments/staging"), out)
				if err != nil {
					t.Fatal(err)
				}
				symlink(t, rel, filepath.Join(dir, "environments/staging/web.yaml"))
			},
			wantErr: []string{"environments/staging/kustomization.yaml", "symlink environments/staging/web.yaml", "outside"},
		},
		{
			name:    "an absolute symlink",
			setup:   func(t *testing.T, dir string) { symlink(t, outsideFile(t), filepath.Join(dir, "environments/staging/web.yaml")) },
			wantErr: []string{"symlink environments/staging/web.yaml", "outside"},
		},
		{
			name: "the gate's folder a symlink out",
			setup: func(t *testing.T, dir string) {
				out := filepath.Dir(outsideFile(t))
				writeFile(t, filepath.Join(out, "kustomization.yaml"), "resources:\n  - web.yaml\n")
				if err := os.RemoveAll(filepath.Join(dir, "environments/staging")); err != nil {
					t.Fatal(err)
				}
				symlink(t, out, filepath.Join(dir, "environments/staging"))
			},
			wantErr: []string{"symlink environments/staging", "outside"},
		},
		{
			name: "a path that climbs out",
			setup: func(t *testing.T, dir string) {
				out := outsideFile(t)
				rel, err := filepath.Rel(filepath.Join(dir, "environments/staging"), out)
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir, "environments/staging/kustomization.yaml"), "resources:\n  - "+filepath.ToSlash(rel)+"\n")
			},
			wantErr: []string{"environments/staging/kustomization.yaml", "climbs out of the repository"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "environments/staging/kustomization.yaml"), "resources:\n  - web.yaml\n")
			tt.setup(t, dir)
			cfg := writeConfig(t, "repository:\n  url: https://git.example.com/desired.git\n"+stagingGate)
			code, stdout, stderr := sluice(t, "render", "--config", cfg, "--gate", "staging", "--dir", dir)
			if strings.Contains(stdout+stderr, canary) {
				t.Errorf("render read the file outside the directory:\n%s%s", stdout, stderr)
			}
			if len(tt.wantErr) == 0 {
				if code != 0 || !strings.Contains(stdout, "version: v1") {
					t.Errorf("render exited %d (%s), want 0 and the ConfigMap", code, stderr)
				}
				return
			}
			if code != 1 || stdout != "" {
				t.Errorf("render exited %d with %q on stdout, want 1 and nothing", code, stdout)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not say %q", stderr, w)
				}
			}
		})
	}
}

// TestRenderRefusesWhatIsNotThere: a gate or commit that does not exist is
// named in the error.
func TestRenderRefusesWhatIsNotThere(t *testing.T) {
	f := newRepoFixture(t, gitserver.Options{})
	cfg := renderConfig(t, f.srv.RepoURL("desired"))
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"an unknown gate", []string{"--gate", "production"}, 2, `--gate "production": ` + cfg + ` has no such gate (it has staging)`},
		{"a commit not on the source branch", []string{"--gate", "staging", "--commit", strings.Repeat("0", 40)}, 1, "--commit " + strings.Repeat("0", 40) + ": no such commit on main"},
		{"a directory that is not there", []string{"--gate", "staging", "--dir", filepath.Join(t.TempDir(), "nothing")}, 1, "--dir: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := sluice(t, append([]string{"render", "--config", cfg}, tt.args...)...)
			if code != tt.code || stdout != "" || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want %d saying %q", code, stderr, tt.code, tt.want)
			}
		})
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}
