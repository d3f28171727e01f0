package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/internal/config"
	"github.com/sluice-gitops/sluice/manifests"
)

// renderFlags are the flags of `sluice render`.
type renderFlags struct {
	cfgFile, gate, commit, dir string
}

func newRenderCommand(stdout io.Writer) *cobra.Command {
	c := &cobra.Command{
		Use:                   "render --config FILE --gate GATE [--commit SHA | --dir PATH]",
		DisableFlagsInUseLine: true,
		Short:                 "Print what a gate would apply for a commit or a working tree",
		Long: `Render prints the objects a gate would apply to test a commit: the gate's
kustomization built under the same loader and limits as the daemon's (no
file outside the tree, no symlink out of it, no remote bases, plugins or
Helm), with the sluice.dev/ labels and annotations Sluice owns removed, moved
into the gate's test namespace by the same overlay. It reads nothing from and
writes nothing to a cluster.

--commit renders a commit of the source branch (a full hash, or a prefix of
at least 4 hex digits); without it, the source branch's tip. --dir renders a
working tree on disk instead: PATH is the repository's root, and the gate's
path is read under it, so you can see the result before you push. The
tree is rendered as it is: while an earlier rejected commit is not yet
reverted on the source branch, the gate tests later commits without it.

The output is YAML, one document per object, separated by "---", in a stable
order: the test namespace, the objects applied (in the render's order), the
gate's tests (applied once the rest is healthy), then cluster-scoped objects,
which are only validated by a server-side dry-run. The namespace's creation
stamp is left out, so two renders of the same tree print the same text. The
scope of a kind comes from Kubernetes' built-in kinds and the CRDs in the
render; a cluster that serves other cluster-scoped kinds may scope them
differently.

Exit codes: 0 when it printed the render; 1 when the kustomization does not
render (the error names the file and field) or the repository cannot be read;
2 when it was called wrongly.`,
		Example: `  sluice render --config sluice.yaml --gate staging
  sluice render --config sluice.yaml --gate staging --commit 1a2b3c4
  sluice render --config sluice.yaml --gate staging --dir .`,
		Args: noArgs,
	}
	var f renderFlags
	fs := c.Flags()
	fs.StringVar(&f.cfgFile, "config", "sluice.yaml", "configuration `file`")
	fs.StringVar(&f.gate, "gate", "", "the `name` of the gate to render for (required)")
	fs.StringVar(&f.commit, "commit", "", "the `commit` of the source branch to render (default: its tip)")
	fs.StringVar(&f.dir, "dir", "", "render the working tree at `path` (the repository's root) instead of a commit")
	configFlag(c, "config")
	_ = c.MarkFlagDirname("dir")
	_ = c.RegisterFlagCompletionFunc("gate", func(c *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
		cfg, err := config.Load(f.cfgFile)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		names := make([]string, len(cfg.Gates))
		for i, g := range cfg.Gates {
			names[i] = g.Name
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	})
	c.RunE = func(c *cobra.Command, _ []string) error { return renderCmd(c.Context(), f, stdout) }
	return c
}

func renderCmd(ctx context.Context, f renderFlags, stdout io.Writer) error {
	if f.gate == "" {
		return usageError{errors.New("--gate is required")}
	}
	if f.commit != "" && f.dir != "" {
		return usageError{errors.New("--commit and --dir: give one or neither")}
	}
	if f.commit != "" && !isHexPrefix(f.commit) {
		return usageError{fmt.Errorf("--commit %q: want a commit hash, or a prefix of it of at least 4 hex digits", f.commit)}
	}
	cfg, err := config.Load(f.cfgFile)
	if err != nil {
		return err
	}
	var gate *config.Gate
	var names []string
	for i := range cfg.Gates {
		names = append(names, cfg.Gates[i].Name)
		if cfg.Gates[i].Name == f.gate {
			gate = &cfg.Gates[i]
		}
	}
	if gate == nil {
		return usageError{fmt.Errorf("--gate %q: %s has no such gate (it has %s)", f.gate, cfg.File(), strings.Join(names, ", "))}
	}
	opts := cfg.Limits.RenderOptions()

	var tree fs.FS
	// The test namespace and commit label are the gate's for a commit; a
	// working tree has no commit yet.
	commit, nsKey := "", "local"
	if f.dir != "" {
		// os.Root refuses, at the system level too, any path that leads
		// out of the directory; the loader refuses such symlinks first,
		// naming them, as it does in a commit's tree.
		root, err := os.OpenRoot(f.dir)
		if err != nil {
			return fmt.Errorf("--dir: %w", err)
		}
		defer root.Close()
		tree = root.FS()
	} else {
		repo, err := openRepo(ctx, cfg, false)
		if err != nil {
			return err
		}
		defer repo.Close()
		source := cfg.Repository.SourceBranch
		if err := repo.Fetch(ctx, source); err != nil {
			return err
		}
		c, err := findCommit(ctx, repo, source, f.commit)
		if err != nil {
			return err
		}
		tree, err = repo.TreeFS(ctx, c.Tree, gitrepo.TreeOptions{MaxBlobSize: opts.MaxFileSize})
		if err != nil {
			return err
		}
		commit, nsKey = c.Hash.String(), c.Hash.String()
	}

	objs, err := manifests.Render(ctx, tree, gate.Path, opts)
	if err != nil {
		return err
	}
	env, err := manifests.Overlay(objs, manifests.OverlayOptions{
		Namespace:     manifests.TestNamespace(gate.Name, nsKey),
		Gate:          gate.Name,
		Commit:        commit,
		ClusterScoped: gate.ClusterScoped,
	})
	if err != nil {
		return err
	}
	return printEnvironment(stdout, env)
}

func isHexPrefix(s string) bool {
	if len(s) < 4 || len(s) > 40 {
		return false
	}
	return strings.Trim(strings.ToLower(s), "0123456789abcdef") == ""
}

// findCommit finds rev (a hash or a prefix of one; "" for the tip) on the
// first-parent history of branch, which is where a gate's queue comes from.
// A prefix that names more than one commit there is refused.
func findCommit(ctx context.Context, repo *gitrepo.Repository, branch, rev string) (gitrepo.Commit, error) {
	tip, err := repo.Tip(ctx, branch)
	if err != nil {
		return gitrepo.Commit{}, err
	}
	rev = strings.ToLower(rev)
	var found []gitrepo.Commit
	for h := tip; !h.IsZero(); {
		if err := ctx.Err(); err != nil {
			return gitrepo.Commit{}, err
		}
		c, err := repo.Commit(ctx, h)
		if err != nil {
			return gitrepo.Commit{}, err
		}
		if strings.HasPrefix(c.Hash.String(), rev) {
			if rev == "" || len(rev) == len(plumbing.ZeroHash.String()) {
				return c, nil
			}
			found = append(found, c)
		}
		h = c.Parent
	}
	switch len(found) {
	case 0:
		return gitrepo.Commit{}, fmt.Errorf("--commit %s: no such commit on %s (only its first-parent history is queued)", rev, branch)
	case 1:
		return found[0], nil
	}
	return gitrepo.Commit{}, fmt.Errorf("--commit %s: names %d commits on %s; give more of the hash", rev, len(found), branch)
}

// printEnvironment writes a test environment as YAML documents, in the order
// the gate uses them, each kind of document marked by a comment.
func printEnvironment(w io.Writer, env *manifests.TestEnvironment) error {
	ns := env.Namespace.DeepCopy()
	a := ns.GetAnnotations()
	delete(a, manifests.AnnotationCreatedAt) // a timestamp: would differ every time
	if len(a) == 0 {
		a = nil
	}
	ns.SetAnnotations(a)

	type doc struct {
		comment string
		obj     *unstructured.Unstructured
	}
	nsComment := "the test namespace"
	if len(env.Dropped) > 0 {
		nsComment += "; left out of the render: " + strings.Join(env.Dropped, ", ")
	}
	docs := []doc{{nsComment, ns}}
	for _, o := range env.Objects {
		docs = append(docs, doc{"", o})
	}
	for _, o := range env.Tests {
		docs = append(docs, doc{"a test: applied once everything else is healthy", o})
	}
	for _, o := range env.ClusterScoped {
		docs = append(docs, doc{"cluster-scoped: validated by a server-side dry-run, never applied", o})
	}
	var b strings.Builder
	for i, d := range docs {
		if i > 0 {
			b.WriteString("---\n")
		}
		if d.comment != "" {
			b.WriteString("# " + d.comment + "\n")
		}
		y, err := yaml.Marshal(d.obj.Object)
		if err != nil {
			return fmt.Errorf("encode %s/%s: %w", d.obj.GetKind(), d.obj.GetName(), err)
		}
		b.Write(y)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
