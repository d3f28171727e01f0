package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"k8s.io/client-go/rest"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/internal/config"
	"github.com/sluice-gitops/sluice/preview"
)

// branchPreviewName is the preview name of a branch: lower-cased, with
// anything a DNS label cannot hold replaced by '-'.
func branchPreviewName(branch string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(branch) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return strings.Trim(b.String(), "-")
}

// syncPreviews is one iteration of the daemon's preview loop: remove the
// expired previews, bring each branch preview up to date with its branch
// (a new tip is a new up), and remove those whose branch is gone.
func syncPreviews(ctx context.Context, cfg *config.Config, repo *gitrepo.Repository, pc *preview.Client, log *slog.Logger) error {
	return syncPreviewsOf(ctx, cfg, repo, pc, log, nil)
}

// syncPreviewsOf is syncPreviews for the previews of the gates mine
// selects (nil: all; see previewOwner). Every replica plans over all the
// gates, so each preview name goes to the same gate and branch whichever
// replica plans it; each acts only on its own gates.
func syncPreviewsOf(ctx context.Context, cfg *config.Config, repo *gitrepo.Repository, pc *preview.Client, log *slog.Logger, mine func(gate string) bool) error {
	if mine == nil {
		mine = func(string) bool { return true }
	}
	removed, err := pc.GCOf(ctx, mine)
	for _, n := range removed {
		log.Info("preview expired", "preview", n)
	}
	if err != nil {
		return err
	}
	// The claims of a gate's preview names depend on the gates before it
	// only: the branches of the gates after the last one kept here are
	// not listed.
	last := -1
	for i, g := range cfg.Gates {
		if len(g.Previews.Branches) > 0 && mine(g.Name) {
			last = i
		}
	}
	if last < 0 {
		return nil // no branch previews kept here
	}
	all, err := pc.List(ctx)
	if err != nil {
		return err
	}
	live := map[string]map[string]plumbing.Hash{} // gate -> branch -> tip
	for _, gate := range cfg.Gates[:last+1] {
		if len(gate.Previews.Branches) == 0 {
			continue
		}
		live[gate.Name] = map[string]plumbing.Hash{}
		for _, glob := range gate.Previews.Branches {
			bs, err := repo.Branches(ctx, glob)
			if err != nil {
				return err
			}
			maps.Copy(live[gate.Name], bs)
		}
	}
	plan := planPreviews(cfg.Gates, live, all, mine)
	for _, s := range plan.skips {
		log.Log(ctx, s.level, s.why, "gate", s.gate, "branch", s.branch, "preview", s.name, "other", s.other)
	}
	var errs []error
	for _, u := range plan.updates {
		gate := &cfg.Gates[u.gate]
		set, err := buildPreview(ctx, cfg, gate, repo, previewSource{name: u.name, branch: u.branch, ttl: gate.Previews.TTL.Duration})
		if err == nil {
			_, err = pc.Apply(ctx, set)
		}
		if err != nil {
			log.Error("preview not updated", "gate", gate.Name, "branch", u.branch, "error", err)
			errs = append(errs, fmt.Errorf("preview of branch %s: %w", u.branch, err))
			continue
		}
		log.Info("preview updated", "gate", gate.Name, "branch", u.branch, "preview", u.name, "changed", len(set.Changed))
	}
	for _, r := range plan.removals {
		if err := pc.Delete(ctx, r.name); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Info("preview removed: its branch is gone", "gate", cfg.Gates[r.gate].Name, "branch", r.branch, "preview", r.name)
	}
	return errors.Join(errs...)
}

// previewChange is a branch preview to bring up to date (updates) or to
// remove because its branch is gone (removals); gate indexes the config's
// gates.
type previewChange struct {
	gate         int
	branch, name string
}

// previewSkip is a branch that gets no preview, and why (a log message).
type previewSkip struct {
	level                     slog.Level
	why                       string
	gate, branch, name, other string
}

type previewPlan struct {
	updates, removals []previewChange
	skips             []previewSkip
}

// planPreviews decides the branch previews of gates from the branches
// that match each gate's previews.branches (live: gate -> branch -> tip)
// and the previews on the cluster (all), for the gates mine selects. The
// claims are made over every gate in the config's order, whatever mine
// says: a name two branches make goes to the first gate, then the first
// branch in order, on every replica alike.
func planPreviews(gates []config.Gate, live map[string]map[string]plumbing.Hash, all []preview.Info, mine func(gate string) bool) previewPlan {
	existing := map[string]preview.Info{}
	for _, p := range all {
		existing[p.Name] = p
	}
	var out previewPlan
	claimed := map[string]string{} // preview name -> branch
	for i := range gates {
		gate := &gates[i]
		if len(gate.Previews.Branches) == 0 {
			continue
		}
		own := mine(gate.Name)
		skip := func(level slog.Level, why, branch, name, other string) {
			if own {
				out.skips = append(out.skips, previewSkip{level, why, gate.Name, branch, name, other})
			}
		}
		branches := live[gate.Name]
		for _, b := range slices.Sorted(maps.Keys(branches)) {
			name := branchPreviewName(b)
			if err := preview.CheckName(name); err != nil {
				skip(slog.LevelWarn, "branch cannot name a preview", b, name, err.Error())
				continue
			}
			// Two branches can make one name (preview/a.b, preview/a-b): the
			// first in order keeps it, so the two never overwrite each other.
			if other, ok := claimed[name]; ok {
				skip(slog.LevelWarn, "branch names the same preview as another", b, name, other)
				continue
			}
			claimed[name] = b
			if p, ok := existing[name]; ok && (p.Source != "branch "+b || p.Gate != gate.Name) {
				skip(slog.LevelDebug, "preview name taken by another preview", b, name, p.Source)
				continue
			}
			if p, ok := existing[name]; (!ok || p.Revision != branches[b].String()) && own {
				out.updates = append(out.updates, previewChange{i, b, name})
			}
		}
		if !own {
			continue
		}
		for _, p := range all {
			b, ok := strings.CutPrefix(p.Source, "branch ")
			if !ok || p.Gate != gate.Name || p.Terminating || !matchesAny(gate.Previews.Branches, b) {
				continue
			}
			if _, ok := branches[b]; !ok {
				out.removals = append(out.removals, previewChange{i, b, p.Name})
			}
		}
	}
	return out
}

// previewOwner is which previews the replica that leads gate keeps, with
// --leader-elect: gate's own; the leader of the config's first gate also
// expires the previews of gates no longer in the config and sweeps the
// HTTPRoutes left of removed previews (gate ""), so that every preview has
// exactly one keeper.
func previewOwner(cfg *config.Config, gate string) func(string) bool {
	first := len(cfg.Gates) > 0 && cfg.Gates[0].Name == gate
	return func(g string) bool {
		if g == gate {
			return true
		}
		if !first {
			return false
		}
		return !slices.ContainsFunc(cfg.Gates, func(c config.Gate) bool { return c.Name == g })
	}
}

func matchesAny(globs []string, b string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, b); ok {
			return true
		}
	}
	return false
}

// startPreviews runs the preview loop next to the daemon, every interval,
// until ctx ends (not with --once); the returned stop ends it and waits.
// With --leader-elect (elect) there is no such loop: the previews of a gate
// are kept by the replica that leads it, with the returned perGate, which
// leader.go runs beside the gate for as long as the lead lasts.
func startPreviews(ctx context.Context, cfg *config.Config, repo *gitrepo.Repository, restCfg *rest.Config, log *slog.Logger, once, elect bool) (stop func(), perGate func(ctx context.Context, gate string)) {
	if once {
		return func() {}, nil
	}
	pc, err := preview.New(restCfg)
	if err != nil {
		log.Error("previews not kept", "error", err)
		return func() {}, nil
	}
	if elect {
		return func() {}, func(ctx context.Context, gate string) {
			keepPreviews(ctx, cfg, repo, pc, log, previewOwner(cfg, gate))
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		keepPreviews(ctx, cfg, repo, pc, log, nil)
	}()
	return func() {
		cancel()
		<-done
	}, nil
}

// keepPreviews syncs the previews mine selects every poll interval until
// ctx ends.
func keepPreviews(ctx context.Context, cfg *config.Config, repo *gitrepo.Repository, pc *preview.Client, log *slog.Logger, mine func(string) bool) {
	for {
		if err := syncPreviewsOf(ctx, cfg, repo, pc, log, mine); err != nil && ctx.Err() == nil {
			log.Error("preview sync failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(cfg.PollInterval.Duration):
		}
	}
}
