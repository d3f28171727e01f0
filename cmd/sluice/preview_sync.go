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
	removed, err := pc.GC(ctx)
	for _, n := range removed {
		log.Info("preview expired", "preview", n)
	}
	if err != nil {
		return err
	}
	all, err := pc.List(ctx)
	if err != nil {
		return err
	}
	existing := map[string]preview.Info{}
	for _, p := range all {
		existing[p.Name] = p
	}
	var errs []error
	claimed := map[string]string{} // preview name -> branch, this iteration
	for i := range cfg.Gates {
		gate := &cfg.Gates[i]
		if len(gate.Previews.Branches) == 0 {
			continue
		}
		live := map[string]plumbing.Hash{}
		for _, glob := range gate.Previews.Branches {
			bs, err := repo.Branches(ctx, glob)
			if err != nil {
				return err
			}
			for b, h := range bs {
				live[b] = h
			}
		}
		for _, b := range slices.Sorted(maps.Keys(live)) {
			tip := live[b]
			name := branchPreviewName(b)
			if err := preview.CheckName(name); err != nil {
				log.Warn("branch cannot name a preview", "gate", gate.Name, "branch", b, "error", err)
				continue
			}
			// Two branches can make one name (preview/a.b, preview/a-b): the
			// first in order keeps it, so the two never overwrite each other.
			if other, ok := claimed[name]; ok {
				log.Warn("branch names the same preview as another", "gate", gate.Name, "branch", b, "other", other, "preview", name)
				continue
			}
			claimed[name] = b
			if p, ok := existing[name]; ok && (p.Source != "branch "+b || p.Gate != gate.Name) {
				log.Debug("preview name taken by another preview", "gate", gate.Name, "branch", b, "preview", name, "source", p.Source)
				continue
			}
			if p, ok := existing[name]; ok && p.Revision == tip.String() {
				continue
			}
			set, err := buildPreview(ctx, cfg, gate, repo, previewSource{name: name, branch: b, ttl: gate.Previews.TTL.Duration})
			if err == nil {
				_, err = pc.Apply(ctx, set)
			}
			if err != nil {
				log.Error("preview not updated", "gate", gate.Name, "branch", b, "error", err)
				errs = append(errs, fmt.Errorf("preview of branch %s: %w", b, err))
				continue
			}
			log.Info("preview updated", "gate", gate.Name, "branch", b, "preview", name, "changed", len(set.Changed))
		}
		for _, p := range all {
			b, ok := strings.CutPrefix(p.Source, "branch ")
			if !ok || p.Gate != gate.Name || p.Terminating || !matchesAny(gate.Previews.Branches, b) {
				continue
			}
			if _, ok := live[b]; ok {
				continue
			}
			if err := pc.Delete(ctx, p.Name); err != nil {
				errs = append(errs, err)
				continue
			}
			log.Info("preview removed: its branch is gone", "gate", gate.Name, "branch", b, "preview", p.Name)
		}
	}
	return errors.Join(errs...)
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
// until ctx ends (not with --once); the returned function stops it and
// waits.
func startPreviews(ctx context.Context, cfg *config.Config, repo *gitrepo.Repository, restCfg *rest.Config, log *slog.Logger, once bool) func() {
	if once {
		return func() {}
	}
	pc, err := preview.New(restCfg)
	if err != nil {
		log.Error("previews not kept", "error", err)
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if err := syncPreviews(ctx, cfg, repo, pc, log); err != nil && ctx.Err() == nil {
				log.Error("preview sync failed", "error", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(cfg.PollInterval.Duration):
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
