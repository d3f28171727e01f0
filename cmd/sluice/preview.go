package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/sluice-gitops/sluice/internal/config"
	"github.com/sluice-gitops/sluice/preview"
	"github.com/sluice-gitops/sluice/testenv"
)

// previewFlags are the flags of `sluice preview ...`.
type previewFlags struct {
	cfgFile, kubeconfig, gate, branch, dir, owner string
	ttl                                           time.Duration
}

func newPreviewCommand(stdout io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "preview",
		Short: "Preview environments: a gate's tested target with a branch's or a working tree's changes on top",
		Long: `A preview is a namespace sluice-preview-NAME made of what a gate tested
(its target branch's render) with the changes of a branch, or of a working
tree, on top. Only the workloads whose rendered objects differ from the
target's run there, with the ConfigMaps, Secrets and ServiceAccounts they
reference; every other Service of the target is a stand-in that routes to
the target's running copy: an ExternalName Service, and with the gate's
previews.routing: gateway-api also an HTTPRoute on the target's Service that
sends requests carrying the header x-sluice-preview: NAME to the preview.

A preview expires (--ttl, default the gate's previews.ttl, 72h); the daemon
removes expired previews and keeps one per branch matching the gate's
previews.branches.`,
		Args: noArgs,
	}
	var f previewFlags
	persistent := root.PersistentFlags()
	persistent.StringVar(&f.cfgFile, "config", "sluice.yaml", "configuration `file`")
	persistent.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig `file` (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
	configFlag(root, "config")

	up := &cobra.Command{
		Use:                   "up NAME --gate GATE (--branch BRANCH | --dir PATH) [--ttl 72h] [--owner WHO]",
		DisableFlagsInUseLine: true,
		Short:                 "Create or update a preview",
		Long: `Up renders the gate's target branch, and the same tree with the changes on
top: the changes of --branch since its merge base with the source branch
(file by file: a file the target branch changed differently since then is a
conflict, named, and nothing is written), or the files under the gate's path
in the working tree --dir (the repository's root) that differ from the
source branch's tip. It then writes the objects that differ, and stand-ins
for the rest, into sluice-preview-NAME, and removes what an earlier up wrote
that is no longer wanted. Running it again updates the preview in place.`,
		Example: `  sluice preview up checkout-v2 --config sluice.yaml --gate staging --branch feature/checkout-v2
  sluice preview up mine --config sluice.yaml --gate staging --dir .`,
		Args: exactlyOneName,
		RunE: func(c *cobra.Command, args []string) error { return previewUpCmd(c.Context(), f, args[0], stdout) },
	}
	up.Flags().StringVar(&f.gate, "gate", "", "the `name` of the gate whose target the preview starts from (required)")
	up.Flags().StringVar(&f.branch, "branch", "", "the `branch` whose changes the preview adds")
	up.Flags().StringVar(&f.dir, "dir", "", "the working tree at `path` (the repository's root) whose changes the preview adds")
	up.Flags().StringVar(&f.owner, "owner", "", "who the preview belongs to (default: $USER, or git's user.email)")
	up.Flags().DurationVar(&f.ttl, "ttl", 0, "how long the preview lives (default: the gate's previews.ttl)")
	_ = up.MarkFlagDirname("dir")

	down := &cobra.Command{
		Use:   "down NAME",
		Short: "Remove a preview: its namespace and its routes in the target namespace",
		Args:  exactlyOneName,
		RunE: func(c *cobra.Command, args []string) error {
			pc, _, _, err := previewClient(f)
			if err != nil {
				return err
			}
			if err := pc.Delete(c.Context(), args[0]); err != nil {
				return err
			}
			_, err = fmt.Fprintf(stdout, "preview %s removed\n", args[0])
			return err
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the previews on the cluster",
		Args:  noArgs,
		RunE:  func(c *cobra.Command, _ []string) error { return previewListCmd(c.Context(), f, stdout) },
	}
	test := &cobra.Command{
		Use:   "test NAME",
		Short: "Run the gate's tests against a preview and print the verdict (no branch is touched)",
		Long: `Test renders the preview again from where it came from, runs the gate's test
Jobs and Pods (labelled sluice.dev/test) in its namespace, then the gate's
host commands with SLUICE_NAMESPACE set to it, and prints the verdict. It
writes nothing to Git. Exit code 1 when a test failed.`,
		Args: exactlyOneName,
		RunE: func(c *cobra.Command, args []string) error { return previewTestCmd(c.Context(), f, args[0], stdout) },
	}
	gc := &cobra.Command{
		Use:   "gc",
		Short: "Remove expired previews",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			pc, _, _, err := previewClient(f)
			if err != nil {
				return err
			}
			removed, err := pc.GC(c.Context())
			for _, n := range removed {
				fmt.Fprintf(stdout, "preview %s expired: removed\n", n)
			}
			return err
		},
	}
	sync := &cobra.Command{
		Use:   "sync",
		Short: "Do once what the daemon does every interval: remove expired previews, keep one per matching branch",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := config.Load(f.cfgFile)
			if err != nil {
				return err
			}
			pc, _, _, err := previewClient(f)
			if err != nil {
				return err
			}
			repo, err := openRepo(c.Context(), cfg, false)
			if err != nil {
				return err
			}
			defer repo.Close()
			log := slog.New(slog.NewTextHandler(stdout, nil))
			return syncPreviews(c.Context(), cfg, repo, pc, log)
		},
	}
	root.AddCommand(up, down, list, test, gc, sync)
	return root
}

func exactlyOneName(c *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usageError{fmt.Errorf("%s takes one preview NAME", c.CommandPath())}
	}
	if err := preview.CheckName(args[0]); err != nil {
		return usageError{fmt.Errorf("preview name %w", err)}
	}
	return nil
}

func previewClient(f previewFlags) (*preview.Client, *rest.Config, string, error) {
	restCfg, path, err := loadKubeconfig(f.kubeconfig)
	if err != nil {
		return nil, nil, "", err
	}
	pc, err := preview.New(restCfg)
	return pc, restCfg, path, err
}

func findGate(cfg *config.Config, name string) (*config.Gate, error) {
	var names []string
	for i := range cfg.Gates {
		if cfg.Gates[i].Name == name {
			return &cfg.Gates[i], nil
		}
		names = append(names, cfg.Gates[i].Name)
	}
	return nil, usageError{fmt.Errorf("--gate %q: %s has no such gate (it has %s)", name, cfg.File(), strings.Join(names, ", "))}
}

func previewUpCmd(ctx context.Context, f previewFlags, name string, stdout io.Writer) error {
	if err := preview.CheckName(name); err != nil {
		return usageError{fmt.Errorf("preview name %w", err)}
	}
	if f.gate == "" {
		return usageError{errors.New("--gate is required")}
	}
	if (f.branch == "") == (f.dir == "") {
		return usageError{errors.New("give one of --branch and --dir")}
	}
	cfg, err := config.Load(f.cfgFile)
	if err != nil {
		return err
	}
	gate, err := findGate(cfg, f.gate)
	if err != nil {
		return err
	}
	pc, _, _, err := previewClient(f)
	if err != nil {
		return err
	}
	repo, err := openRepo(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer repo.Close()
	ttl := f.ttl
	if ttl <= 0 {
		ttl = gate.Previews.TTL.Duration
	}
	set, err := buildPreview(ctx, cfg, gate, repo, previewSource{name: name, branch: f.branch, dir: f.dir, owner: owner(f), ttl: ttl})
	if err != nil {
		return err
	}
	res, err := pc.Apply(ctx, set)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "preview %s up in namespace %s: %d changed (%s), %d stand-ins for %s, %d objects written, %d removed\n",
		name, set.Namespace.GetName(), len(set.Changed), strings.Join(set.Changed, ", "), len(set.StandIns), set.TargetNamespace, res.Applied, len(res.Removed))
	return err
}

func owner(f previewFlags) string {
	if f.owner != "" {
		return f.owner
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	out, err := exec.Command("git", "config", "user.email").Output()
	if err == nil {
		return strings.TrimSpace(string(out))
	}
	return ""
}

func previewListCmd(ctx context.Context, f previewFlags, stdout io.Writer) error {
	pc, _, _, err := previewClient(f)
	if err != nil {
		return err
	}
	all, err := pc.List(ctx)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tGATE\tSOURCE\tOWNER\tEXPIRES\tAGE\tOBJECTS")
	now := time.Now()
	for _, p := range all {
		exp := p.Expires.UTC().Format(time.RFC3339)
		if p.Terminating {
			exp = "removing"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", p.Name, p.Gate, p.Source, orDash(p.Owner), exp, now.Sub(p.Created).Round(time.Second), p.Objects)
	}
	return w.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func previewTestCmd(ctx context.Context, f previewFlags, name string, stdout io.Writer) error {
	if err := preview.CheckName(name); err != nil {
		return usageError{fmt.Errorf("preview name %w", err)}
	}
	cfg, err := config.Load(f.cfgFile)
	if err != nil {
		return err
	}
	pc, restCfg, kubeconfigPath, err := previewClient(f)
	if err != nil {
		return err
	}
	info, err := pc.Get(ctx, name)
	if err != nil {
		return err
	}
	gate, err := findGate(cfg, info.Gate)
	if err != nil {
		return err
	}
	src := previewSource{name: name, owner: info.Owner, ttl: time.Until(info.Expires)}
	kind, where, _ := strings.Cut(info.Source, " ")
	switch kind {
	case "branch":
		src.branch = where
	case "dir":
		src.dir = where
	default:
		return fmt.Errorf("preview %s: unknown source %q", name, info.Source)
	}
	repo, err := openRepo(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer repo.Close()
	set, err := buildPreview(ctx, cfg, gate, repo, src)
	if err != nil {
		return err
	}
	if err := pc.ClearTests(ctx, set.Tests); err != nil {
		return err
	}
	cluster, err := testenv.NewCluster(restCfg, kubeconfigPath)
	if err != nil {
		return err
	}
	var spec testenv.TestSpec
	for _, g := range gates(cfg) {
		if g.Name == gate.Name {
			spec = testenv.TestSpec{Gate: g.Name, Namespace: preview.Namespace(name), TestsTimeout: g.TestsTimeout, Commands: g.Commands}
		}
	}
	start := time.Now()
	err = cluster.RunTests(ctx, spec, set.Tests)
	took := time.Since(start).Round(time.Millisecond)
	if testenv.IsFault(err) {
		fmt.Fprintf(stdout, "preview %s: failed after %s: %v\n", name, took, err)
		return fmt.Errorf("preview %s: tests failed", name)
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "preview %s: passed (%d test objects, %d commands) in %s\n", name, len(set.Tests), len(spec.Commands), took)
	return err
}
