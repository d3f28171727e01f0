package reconcile

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/manifests"
	"github.com/sluice-gitops/sluice/test/gitserver"
)

// TestSameRender: the path rules, on the read set of a render of
// environments/staging that reads a base through a symlinked directory, a
// patch through a symlink, and lists one directory.
func TestSameRender(t *testing.T) {
	reads := manifests.ReadSet{
		Paths: []string{
			"base/Kustomization", "base/deployment.yaml", "base/kustomization.yaml", "base/kustomization.yml",
			"environments/staging/Kustomization", "environments/staging/kustomization.yaml", "environments/staging/kustomization.yml",
			"environments/staging/patch.yaml", // a symlink to patches/replicas.yaml
			"environments/staging/shared",     // a symlink to ../../base
			"generated",                       // listed
			"patches/replicas.yaml",
		},
		Dirs: []string{"base", "environments", "environments/staging", "patches"},
	}
	tests := []struct {
		name    string
		reads   manifests.ReadSet
		changed []string
		want    bool
	}{
		{"nothing changed", reads, nil, true},
		{"a README at the root", reads, []string{"README.md"}, true},
		{"a doc beside the gate's kustomization", reads, []string{"environments/staging/NOTES.md"}, true},
		{"a doc in a directory the render went through", reads, []string{"base/README.md"}, true},
		{"a doc renamed", reads, []string{"docs/new.md", "docs/old.md"}, true},
		{"a kustomization in another environment", reads, []string{"environments/prod/kustomization.yaml"}, true},
		{"a name that only starts like a read one", reads, []string{"base/deployment.yaml.orig", "patches/replicas.yamlx", "generated-old/x.yaml", "bases/x"}, true},
		{"a name that differs only in case", reads, []string{"Base/deployment.yaml", "environments/staging/KUSTOMIZATION.YAML"}, true},

		{"a referenced patch edited", reads, []string{"patches/replicas.yaml"}, false},
		{"a referenced patch renamed", reads, []string{"patches/replicas-3.yaml", "patches/replicas.yaml"}, false},
		{"a new kustomization.yml beside the kustomization.yaml it would clash with", reads, []string{"base/kustomization.yml"}, false},
		{"a new Kustomization in the gate's directory", reads, []string{"environments/staging/Kustomization"}, false},
		{"a symlink retargeted", reads, []string{"environments/staging/patch.yaml"}, false},
		{"a symlinked directory retargeted", reads, []string{"environments/staging/shared"}, false},
		{"a file added to a listed directory", reads, []string{"generated/new.yaml"}, false},
		{"a file added deep under a listed directory", reads, []string{"generated/a/b/new.yaml"}, false},
		{"a directory the render went through removed", reads, []string{"base", "base/README.md", "base/deployment.yaml", "base/kustomization.yaml"}, false},
		{"a directory the render went through replaced by a symlink", reads, []string{"patches"}, false},
		{"the gate's directory replaced, reported alone", reads, []string{"environments"}, false},
		{"a read file turned into a directory", reads, []string{"patches/replicas.yaml/x"}, false},
		{"one read change among docs", reads, []string{"README.md", "docs/a.md", "patches/replicas.yaml", "zzz.md"}, false},

		{"a directory the render only found there replaced", manifests.ReadSet{Paths: []string{"a/kustomization.yaml"}, Dirs: []string{"a", "components"}}, []string{"components"}, false},
		{"a file added to a directory the render only found there", manifests.ReadSet{Paths: []string{"a/kustomization.yaml"}, Dirs: []string{"a", "components"}}, []string{"components/x.yaml"}, true},

		{"an unknown read set", manifests.ReadSet{}, []string{"README.md"}, false},
		{"a read set that covers the root", manifests.ReadSet{Paths: []string{"."}}, []string{"README.md"}, false},
		{"a read set with a path that is not clean", manifests.ReadSet{Paths: []string{"a/../base/kustomization.yaml"}}, []string{"README.md"}, false},
		{"the root as a changed path", reads, []string{"."}, false},
		{"an empty changed path", reads, []string{""}, false},
		{"a changed path that climbs", reads, []string{"docs/../base/deployment.yaml"}, false},
		{"a changed path with a doubled slash", reads, []string{"base//deployment.yaml"}, false},
		{"an absolute changed path", reads, []string{"/patches/replicas.yaml"}, false},
		{"a changed path with a trailing slash", reads, []string{"docs/"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sameRender(tt.reads, tt.changed); got != tt.want {
				t.Errorf("sameRender(%q) = %v, want %v", tt.changed, got, tt.want)
			}
		})
	}
}

// serviceRepo is a desired state of n services (Deployment + Service each,
// with a README) rendered through environments/staging, which patches one
// of them with a file and another through a symlink; a service no
// environment uses and documentation sit beside them. Symlinks are the
// values starting with "-> ".
func serviceRepo(n int) map[string]string {
	files := map[string]string{
		"README.md":     "# desired state\n",
		"docs/guide.md": "how to\n",
		"environments/staging/patches/replicas.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: svc-001\nspec:\n  replicas: 3\n",
		"environments/staging/image.yaml":            "-> ../../patches/image-v1.yaml",
		"patches/image-v1.yaml":                      imagePatch("1.0.1"),
		"patches/image-v2.yaml":                      imagePatch("2.0.0"),
	}
	var k strings.Builder
	k.WriteString("namespace: staging\nlabels:\n- pairs: {env: staging}\npatches:\n- path: patches/replicas.yaml\n- path: image.yaml\nresources:\n")
	for i := range n + 1 {
		s := fmt.Sprintf("svc-%03d", i)
		if i == n {
			s = "svc-unused"
		} else {
			k.WriteString("- ../../services/" + s + "\n")
		}
		files["services/"+s+"/kustomization.yaml"] = "resources:\n- deployment.yaml\n- service.yaml\n"
		files["services/"+s+"/README.md"] = "# " + s + "\n"
		files["services/"+s+"/deployment.yaml"] = fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
spec:
  replicas: 2
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      containers:
      - name: %[1]s
        image: example.com/%[1]s:1.0.0
        ports: [{containerPort: 8080}]
`, s)
		files["services/"+s+"/service.yaml"] = fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata:\n  name: %[1]s\nspec:\n  selector: {app: %[1]s}\n  ports: [{port: 80, targetPort: 8080}]\n", s)
	}
	files["environments/staging/kustomization.yaml"] = k.String()
	return files
}

func imagePatch(tag string) string {
	return "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: svc-000\nspec:\n  template:\n    spec:\n      containers:\n      - name: svc-000\n        image: example.com/svc-000:" + tag + "\n"
}

// write puts files into a clone; a value "-> target" is a symlink.
func write(t testing.TB, w *gitserver.Work, files map[string]string) {
	t.Helper()
	for p, data := range files {
		target, link := strings.CutPrefix(data, "-> ")
		if !link {
			w.Write(t, p, data)
			continue
		}
		full := filepath.Join(w.Dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
	}
}

// serviceRepoOnServer seeds a Git server with serviceRepo(n) on main and
// returns the clone that made it and the server's URL for the repository.
func serviceRepoOnServer(t testing.TB, n int) (*gitserver.Work, string) {
	t.Helper()
	srv := gitserver.Start(t, gitserver.Options{})
	url := srv.CreateRepo(t, "desired")
	w := srv.Clone(t, "desired")
	write(t, w, serviceRepo(n))
	w.Commit(t, "100 services")
	if err := w.Push(t, "HEAD:refs/heads/main"); err != nil {
		t.Fatal(err)
	}
	return w, url
}

// treeOf fetches branch into r and returns its tip's tree.
func treeOf(t testing.TB, r *gitrepo.Repository, branch string) plumbing.Hash {
	t.Helper()
	if err := r.Fetch(context.Background(), branch); err != nil {
		t.Fatal(err)
	}
	tip, err := r.Tip(context.Background(), branch)
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.Commit(context.Background(), tip)
	if err != nil {
		t.Fatal(err)
	}
	return c.Tree
}

// renderTree renders environments/staging from a tree object, as a gate does.
func renderTree(t testing.TB, r *gitrepo.Repository, tree plumbing.Hash) (string, manifests.ReadSet, error) {
	t.Helper()
	opts := manifests.DefaultRenderOptions()
	fsys, err := r.TreeFS(context.Background(), tree, gitrepo.TreeOptions{MaxBlobSize: opts.MaxFileSize})
	if err != nil {
		t.Fatal(err)
	}
	objs, reads, err := manifests.RenderWithReads(context.Background(), fsys, "environments/staging", opts)
	if err != nil {
		return "", manifests.ReadSet{}, err
	}
	return manifests.Digest(objs), reads, nil
}

// TestSameRenderOnGitTrees: on a 100-service repository served by a real
// Git server, a commit that changes only documentation, or files no render
// reads, is known to render the same without rendering; one that changes
// a read file, a symlink, a probed kustomization name or a directory the
// render went through is not. Each verdict is checked against a real
// render of the commit: a "same" must render the same digest.
func TestSameRenderOnGitTrees(t *testing.T) {
	w, url := serviceRepoOnServer(t, 100)
	base := w.Git(t, "rev-parse", "HEAD")

	tests := []struct {
		name   string
		write  map[string]string
		remove []string
		want   bool
	}{
		{name: "a README at the root", write: map[string]string{"README.md": "# changed\n"}, want: true},
		{name: "a service's README", write: map[string]string{"services/svc-042/README.md": "# changed\n"}, want: true},
		{name: "a new doc beside the gate's kustomization", write: map[string]string{"environments/staging/NOTES.md": "notes\n"}, want: true},
		{name: "a doc renamed", write: map[string]string{"docs/howto.md": "how to\n"}, remove: []string{"docs/guide.md"}, want: true},
		{name: "a service no environment uses", write: map[string]string{"services/svc-unused/deployment.yaml": "broken: [\n"}, want: true},
		{name: "an unused patch", write: map[string]string{"patches/image-v2.yaml": imagePatch("3.0.0")}, want: true},
		{name: "a kustomization name in another case", write: map[string]string{"services/svc-007/KUSTOMIZATION.YAML": "resources: []\n"}, want: true},

		{name: "a referenced patch edited", write: map[string]string{"environments/staging/patches/replicas.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: svc-001\nspec:\n  replicas: 5\n"}, want: false},
		{name: "a referenced patch renamed", write: map[string]string{"environments/staging/patches/replicas-3.yaml": "x: 1\n"}, remove: []string{"environments/staging/patches/replicas.yaml"}, want: false},
		{name: "a service's deployment edited", write: map[string]string{"services/svc-099/deployment.yaml": strings.Replace(serviceRepo(100)["services/svc-099/deployment.yaml"], "1.0.0", "1.0.1", 1)}, want: false},
		{name: "a new kustomization.yml beside a service's kustomization.yaml", write: map[string]string{"services/svc-007/kustomization.yml": "resources: []\n"}, want: false},
		{name: "a new Kustomization in the gate's directory", write: map[string]string{"environments/staging/Kustomization": "resources: []\n"}, want: false},
		{name: "a symlink retargeted", remove: []string{"environments/staging/image.yaml"}, write: map[string]string{"environments/staging/image.yaml": "-> ../../patches/image-v2.yaml"}, want: false},
		{name: "the target of a symlink edited", write: map[string]string{"patches/image-v1.yaml": imagePatch("1.0.2")}, want: false},
		{name: "a service's directory replaced by a symlink", remove: []string{"services/svc-003"}, write: map[string]string{"services/svc-003": "-> svc-unused"}, want: false},
		{name: "a service's directory removed", remove: []string{"services/svc-004"}, want: false},
	}
	for i, tt := range tests {
		w.Git(t, "reset", "--quiet", "--hard", base)
		for _, p := range tt.remove {
			w.Remove(t, p)
		}
		write(t, w, tt.write)
		w.Commit(t, tt.name)
		if err := w.Push(t, fmt.Sprintf("HEAD:refs/heads/case-%d", i)); err != nil {
			t.Fatal(err)
		}
	}

	r, err := gitrepo.Open(context.Background(), gitrepo.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	baseTree := treeOf(t, r, "main")
	baseDigest, reads, err := renderTree(t, r, baseTree)
	if err != nil {
		t.Fatal(err)
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree := treeOf(t, r, fmt.Sprintf("case-%d", i))
			changed, err := r.ChangedPaths(context.Background(), baseTree, tree)
			if err != nil {
				t.Fatal(err)
			}
			got := sameRender(reads, changed)
			if got != tt.want {
				t.Errorf("sameRender(changed %q) = %v, want %v", changed, got, tt.want)
			}
			digest, _, err := renderTree(t, r, tree)
			switch {
			case got && err != nil:
				t.Errorf("known to render the same, but the render fails: %v", err)
			case got && digest != baseDigest:
				t.Errorf("known to render the same, but renders %s, not %s", digest, baseDigest)
			case !got && err == nil && digest == baseDigest:
				t.Logf("rendered again, to the same objects")
			}
		})
	}
}

// BenchmarkSameRender compares what a documentation commit costs a
// 100-service gate: a full render of its tree, as today, against the
// comparison of its tree with the last rendered one and the decision; and
// what a queue of 100 documentation commits costs when each is compared
// with the one before it, the read set carried over.
//
//	go test -run '^$' -bench BenchmarkSameRender ./reconcile
func BenchmarkSameRender(b *testing.B) {
	w, url := serviceRepoOnServer(b, 100)
	var docs []string
	for i := range 100 {
		w.Write(b, fmt.Sprintf("services/svc-%03d/README.md", i), "# changed\n")
		docs = append(docs, w.Commit(b, fmt.Sprintf("docs %d", i)))
	}
	if err := w.Push(b, "HEAD:refs/heads/docs"); err != nil {
		b.Fatal(err)
	}
	r, err := gitrepo.Open(context.Background(), gitrepo.Options{URL: url})
	if err != nil {
		b.Fatal(err)
	}
	baseTree := treeOf(b, r, "main")
	treeOf(b, r, "docs")
	var docTrees []plumbing.Hash
	for _, h := range docs {
		c, err := r.Commit(context.Background(), plumbing.NewHash(h))
		if err != nil {
			b.Fatal(err)
		}
		docTrees = append(docTrees, c.Tree)
	}
	docTree := docTrees[0]
	_, reads, err := renderTree(b, r, baseTree)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("full render", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := renderTree(b, r, docTree); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("changed paths and decision", func(b *testing.B) {
		for b.Loop() {
			changed, err := r.ChangedPaths(context.Background(), baseTree, docTree)
			if err != nil {
				b.Fatal(err)
			}
			if !sameRender(reads, changed) {
				b.Fatalf("a README change needs a render: %q", changed)
			}
		}
	})
	b.Run("100 documentation commits", func(b *testing.B) {
		for b.Loop() {
			prev := baseTree
			for _, tree := range docTrees {
				changed, err := r.ChangedPaths(context.Background(), prev, tree)
				if err != nil {
					b.Fatal(err)
				}
				if !sameRender(reads, changed) {
					b.Fatalf("a README change needs a render: %q", changed)
				}
				prev = tree
			}
		}
	})
}

// TestDrainRendersOnlyWhatChangesItsInputs: a gate renders a candidate
// only when its tree differs from the last rendered one at a path that
// render read; otherwise it reuses that render's objects and digest, and
// says so. The last render outlives the pass (a later RunOnce reuses it).
// A reused render must still give the verdicts a render gives: the bump
// after the docs is rendered and tested, the breaking one fails.
func TestDrainRendersOnlyWhatChangesItsInputs(t *testing.T) {
	f := newQueueFixture(t)
	var (
		mu      sync.Mutex
		renders = map[string]string{} // subject -> render detail
	)
	f.runner.OnEvent = func(e Event) {
		if e.Step == StepRender {
			mu.Lock()
			renders[e.Commit.Subject] = e.Detail
			mu.Unlock()
		}
	}
	type commit struct {
		subject, path, content string
		reused                 bool
		verdict                Verdict
	}
	rounds := [][]commit{{
		{"docs", "README.md", "hello\n", false, Passed}, // nothing rendered yet in this process
		{"more docs", "README.md", "hello again\n", true, Passed},
		{"notes beside the kustomization", "env/NOTES.md", "notes\n", true, Passed},
		{"bump A to v3", "env/a.yaml", deployment("a", "v3"), false, Passed},
		{"docs after the bump", "README.md", "bye\n", true, Passed},
		{"bump B to v4", "env/b.yaml", deployment("b", "v4"), false, Failed},
		// Its candidate has b4 reverted out: b.yaml differs from b4's render.
		{"docs after the broken bump", "docs/x.md", "x\n", false, Passed},
	}, {
		{"docs in the next run", "README.md", "next\n", true, Passed},
		{"kustomization.yml beside kustomization.yaml", "env/kustomization.yml", "resources: [a.yaml]\n", false, Failed},
	}}
	for _, round := range rounds {
		shas := map[string]string{}
		for _, c := range round {
			shas[c.subject] = f.push(c.subject, c.path, c.content)
		}
		if err := f.runner.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, c := range round {
			mu.Lock()
			detail, ok := renders[c.subject]
			mu.Unlock()
			if reused := strings.HasPrefix(detail, "unchanged inputs, "); !ok || reused != c.reused {
				t.Errorf("%s: render %q, want reused %v", c.subject, detail, c.reused)
			}
			if rec := f.record(shas[c.subject]); Verdict(rec.Verdict) != c.verdict {
				t.Errorf("%s: %s, want %s (%s)", c.subject, rec.Verdict, c.verdict, rec.Reason)
			}
		}
		// b4's revert has the tree of the candidate before it.
		mu.Lock()
		if detail := renders[`Revert "bump B to v4"`]; len(shas) == 7 && !strings.HasPrefix(detail, "unchanged inputs, ") {
			t.Errorf("b4's revert: render %q, want reused (%q)", detail, renders)
		}
		mu.Unlock()
	}
	if got := f.env.calls(); got != 3 {
		t.Errorf("%d candidates tested, want 3 (the first docs, a3, b4): %v", got, f.env.tested)
	}
}
