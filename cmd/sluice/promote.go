package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/internal/config"
	"github.com/sluice-gitops/sluice/promote"
	"github.com/sluice-gitops/sluice/reconcile"
)

// maxPromoteRounds bounds how often `run --once` drains again because a
// drain promoted something into another gate's folder.
const maxPromoteRounds = 5

// promoteRule is gate's `promote:` as a promote.Rule; ok is false when the
// gate promotes nowhere.
func promoteRule(cfg *config.Config, gate string) (promote.Rule, *config.Gate, bool) {
	g := cfg.Gate(gate)
	if g == nil || !g.Promote.Set() {
		return promote.Rule{}, g, false
	}
	to := cfg.Gate(g.Promote.To)
	return promote.Rule{Gate: g.Name, GatePath: g.Path, To: to.Name, ToPath: to.Path, Paths: g.Promote.Paths}, g, true
}

// checkPromotePaths fetches the source branch and refuses a promote glob
// that matches no file of its tip, naming the config's file, line and field.
func checkPromotePaths(ctx context.Context, cfg *config.Config, repo *gitrepo.Repository) error {
	var rules []promote.Rule
	for _, g := range cfg.Gates {
		if r, _, ok := promoteRule(cfg, g.Name); ok {
			rules = append(rules, r)
		}
	}
	if len(rules) == 0 {
		return nil
	}
	src := cfg.Repository.SourceBranch
	if err := repo.Fetch(ctx, src); err != nil {
		return err
	}
	tip, err := repo.Tip(ctx, src)
	if err != nil {
		return err
	}
	c, err := repo.Commit(ctx, tip)
	if err != nil {
		return err
	}
	fsys, err := repo.TreeFS(ctx, c.Tree, gitrepo.DefaultTreeOptions())
	if err != nil {
		return err
	}
	for _, r := range rules {
		i, err := r.Unmatched(fsys)
		if err != nil {
			return cfg.PromoteError(r.Gate, fmt.Sprintf("paths[%d]", i), err.Error())
		}
		if i >= 0 {
			return cfg.PromoteError(r.Gate, fmt.Sprintf("paths[%d]", i), fmt.Sprintf("%q matches no file under %s on %s (%s)", r.Paths[i], r.GatePath, src, tip.String()[:12]))
		}
	}
	return nil
}

// startPromoter hooks promotion onto r's drains, keeping r's OnDrain: after
// each drain of a gate with `promote:`, what it passed is promoted. It
// returns the count of pushed promotions, which `run --once` uses to drain
// again.
func startPromoter(ctx context.Context, cfg *config.Config, repo *gitrepo.Repository, key *gitrepo.VerdictKey, r *reconcile.Runner, log *slog.Logger, once bool) (func() int64, error) {
	var pushed atomic.Int64
	var reported sync.Map // conflicts logged: "<from> <path>"
	count := func() int64 { return pushed.Load() }
	if err := checkPromotePaths(ctx, cfg, repo); err != nil {
		var ce *config.Error
		if errors.As(err, &ce) || !gitrepo.IsTransient(err) {
			return count, err
		}
		// The remote is down: the gates will retry, and so will promotion.
		log.Warn("could not check the promote paths against the source branch", "error", err)
	}
	drained := r.OnDrain
	r.OnDrain = func(gate string, err error) {
		if drained != nil {
			drained(gate, err)
		}
		rule, g, ok := promoteRule(cfg, gate)
		if !ok || (err != nil && !errors.Is(err, reconcile.ErrGateStopped)) {
			return
		}
		res, perr := promote.Run(ctx, promote.Options{Repo: repo, Key: key, Source: cfg.Repository.SourceBranch, Target: g.TargetBranch}, rule)
		// A conflict stays until someone resolves it: say it once.
		res.Conflicts = slices.DeleteFunc(res.Conflicts, func(c promote.Conflict) bool {
			_, seen := reported.LoadOrStore(c.From.String()+" "+c.Path, true)
			return seen
		})
		logPromotion(log, rule, res, perr)
		if n := len(res.Promoted); n > 0 {
			reconcile.CrashPoint("promoted")
			pushed.Add(int64(n))
			if !once {
				r.Wake()
			}
		}
	}
	return count, nil
}

func logPromotion(log *slog.Logger, rule promote.Rule, res promote.Result, err error) {
	l := log.With("gate", rule.Gate, "to", rule.To)
	for _, p := range res.Promoted {
		l.Info("promoted", "file", p.Path, "from", p.From.String()[:12], "commit", p.Commit.String()[:12], "subject", p.Subject)
	}
	for _, c := range res.Conflicts {
		l.Warn("promotion conflict: the target's file was edited since; not promoted", "file", c.Path, "target", c.Target, "from", c.From.String()[:12], "edited_by", c.EditedBy.String()[:12])
	}
	for _, c := range res.Already {
		l.Debug("already promoted", "file", c.Path, "from", c.From.String()[:12])
	}
	if err != nil {
		l.Warn("promotion failed, will retry after the next drain", "error", err)
	}
}

// runOncePromoting is RunOnce, again while the last round promoted
// something another gate has not tested yet.
func runOncePromoting(ctx context.Context, r *reconcile.Runner, promoted func() int64) error {
	for round := 0; ; round++ {
		before := promoted()
		err := r.RunOnce(ctx)
		if err != nil || promoted() == before || round+1 >= maxPromoteRounds || ctx.Err() != nil {
			return err
		}
	}
}

type promoteFlags struct {
	cfgFile, from, to, kubeconfig string
}

func newPromoteCommand(stdout io.Writer) *cobra.Command {
	c := &cobra.Command{
		Use:                   "promote --config FILE --from GATE --to GATE SERVICE...",
		DisableFlagsInUseLine: true,
		Short:                 "Promote what one gate passed into the next gate's folder, now",
		Long: `Promote does on demand what the daemon does after each drain of a gate with
promote: for each SERVICE (a file's base name under the gate's promote.paths),
the newest change of its file that gate --from passed (by its signed verdict
note) is copied into gate --to's folder, one signed commit per file
("Promote a v3 from shared-dev to staging", trailers Sluice-Gate and
Sluice-Promoted-From), pushed to the source branch with compare-and-swap.
Gate --to then tests it like any other commit. A change already promoted is
not promoted again; one whose target file someone edited since is reported
as a conflict and left alone.

Exit codes: 0 when every SERVICE is promoted or was already; 1 on a
conflict, a service with no passed change, or an error reading or writing
the repository; 2 when it was called wrongly (--from does not promote to
--to, no SERVICE).`,
		Example: `  sluice promote --config sluice.yaml --from shared-dev --to staging a b`,
	}
	var f promoteFlags
	fs := c.Flags()
	fs.StringVar(&f.cfgFile, "config", "sluice.yaml", "configuration `file`")
	fs.StringVar(&f.from, "from", "", "the promoting `gate` (required)")
	fs.StringVar(&f.to, "to", "", "the `gate` promoted to: the --from gate's promote.to (required)")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig `file`, to read a generated verdict key")
	configFlag(c, "config")
	c.RunE = func(c *cobra.Command, args []string) error {
		return promoteCmd(c.Context(), f, args, stdout)
	}
	return c
}

func promoteCmd(ctx context.Context, f promoteFlags, services []string, stdout io.Writer) error {
	if f.from == "" || f.to == "" {
		return usageError{errors.New("--from and --to are required")}
	}
	if len(services) == 0 {
		return usageError{errors.New("name at least one SERVICE")}
	}
	cfg, err := config.Load(f.cfgFile)
	if err != nil {
		return err
	}
	rule, g, ok := promoteRule(cfg, f.from)
	switch {
	case g == nil:
		return usageError{fmt.Errorf("--from %q: %s names no gate", f.from, cfg.File())}
	case !ok || rule.To != f.to:
		return usageError{fmt.Errorf("--from %q does not promote to %q (%s: gates[].promote.to)", f.from, f.to, cfg.File())}
	}
	key, err := loadVerdictKey(ctx, cfg, func() (*rest.Config, error) {
		rc, _, err := loadKubeconfig(f.kubeconfig)
		return rc, err
	}, false)
	if err != nil {
		return err
	}
	repo, err := openRepo(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer repo.Close()
	if err := checkPromotePaths(ctx, cfg, repo); err != nil {
		return err
	}
	res, err := promote.Run(ctx, promote.Options{Repo: repo, Key: key, Source: cfg.Repository.SourceBranch, Target: g.TargetBranch, Services: services}, rule)
	if err != nil {
		return err
	}
	found := map[string]bool{}
	for _, p := range res.Promoted {
		found[promote.Service(p.Path)] = true
		fmt.Fprintf(stdout, "promoted %s: %s (%s)\n", p.Path, p.Subject, p.Commit.String()[:12])
	}
	for _, a := range res.Already {
		found[promote.Service(a.Path)] = true
		fmt.Fprintf(stdout, "already promoted %s from %s\n", a.Path, a.From.String()[:12])
	}
	var problems []string
	for _, c := range res.Conflicts {
		found[promote.Service(c.Path)] = true
		problems = append(problems, fmt.Sprintf("%s: %s was edited by %s since %s passed; not promoted", c.Path, c.Target, c.EditedBy.String()[:12], c.From.String()[:12]))
	}
	for _, s := range services {
		if !found[s] {
			problems = append(problems, fmt.Sprintf("%s: gate %s passed no change of it (on %s)", s, f.from, g.TargetBranch))
		}
	}
	if len(problems) > 0 {
		return errors.New(joinLines(problems))
	}
	return nil
}

func joinLines(s []string) string {
	out := ""
	for i, l := range s {
		if i > 0 {
			out += "\n"
		}
		out += l
	}
	return out
}
