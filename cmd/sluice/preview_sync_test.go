package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/google/go-cmp/cmp"

	"github.com/sluice-gitops/sluice/internal/config"
	"github.com/sluice-gitops/sluice/preview"
)

// describe turns a plan into lines a diff reads well.
func describe(gates []config.Gate, p previewPlan) []string {
	var out []string
	for _, u := range p.updates {
		out = append(out, fmt.Sprintf("%s: up %s from %s", gates[u.gate].Name, u.name, u.branch))
	}
	for _, r := range p.removals {
		out = append(out, fmt.Sprintf("%s: down %s (%s gone)", gates[r.gate].Name, r.name, r.branch))
	}
	for _, s := range p.skips {
		out = append(out, fmt.Sprintf("%s: skip %s: %s", s.gate, s.branch, s.why))
	}
	return out
}

// TestPreviewPlanSharedByLeases: each replica keeps only the previews of
// the gates it leads (previewOwner), and the replicas together do exactly
// what one process keeping every gate does, with no preview kept by two:
// a name two gates' branches make goes to the first gate on every replica.
func TestPreviewPlanSharedByLeases(t *testing.T) {
	tip := func(s string) plumbing.Hash { return plumbing.NewHash(strings.Repeat(s, 40)) }
	long := "preview/" + strings.Repeat("x", 60) // too long a name
	cfg := &config.Config{Gates: []config.Gate{
		{Name: "shared-dev", Previews: config.Previews{Branches: []string{"preview/*"}}},
		{Name: "staging", Previews: config.Previews{Branches: []string{"preview/*", "feature/*"}}},
		{Name: "prod"},
	}}
	live := map[string]map[string]plumbing.Hash{
		"shared-dev": {"preview/a-b": tip("1"), "preview/a.b": tip("2"), "preview/x": tip("3"), long: tip("4")},
		"staging":    {"preview/a-b": tip("1"), "feature/y": tip("5")},
	}
	all := []preview.Info{
		{Name: "preview-x", Gate: "shared-dev", Source: "branch preview/x", Revision: tip("3").String()},
		{Name: "preview-old", Gate: "shared-dev", Source: "branch preview/old"},
		{Name: "feature-gone", Gate: "staging", Source: "branch feature/gone"},
		{Name: "feature-y", Gate: "staging", Source: "dir ./feature-y"}, // someone's `preview up --dir`
		{Name: "mine", Gate: "staging", Source: "dir ."},
	}
	whole := describe(cfg.Gates, planPreviews(cfg.Gates, live, all, func(string) bool { return true }))
	want := []string{
		"shared-dev: up preview-a-b from preview/a-b",
		"shared-dev: down preview-old (preview/old gone)",
		"staging: down feature-gone (feature/gone gone)",
		"shared-dev: skip preview/a.b: branch names the same preview as another",
		"shared-dev: skip " + long + ": branch cannot name a preview",
		"staging: skip feature/y: preview name taken by another preview",
		"staging: skip preview/a-b: branch names the same preview as another",
	}
	if diff := cmp.Diff(want, whole); diff != "" {
		t.Errorf("one process keeping every gate (-want +got):\n%s", diff)
	}

	var union []string
	for _, leader := range []string{"shared-dev", "staging", "prod"} {
		part := describe(cfg.Gates, planPreviews(cfg.Gates, live, all, previewOwner(cfg, leader)))
		for _, line := range part {
			if !strings.HasPrefix(line, leader+": ") {
				t.Errorf("the leader of %s plans %q", leader, line)
			}
			if slices.Contains(union, line) {
				t.Errorf("two leaders plan %q", line)
			}
		}
		union = append(union, part...)
	}
	slices.Sort(union)
	slices.Sort(want)
	if diff := cmp.Diff(want, union); diff != "" {
		t.Errorf("the leaders together (-want +got):\n%s", diff)
	}
}

// TestPreviewOwner: the leader of a gate keeps its previews; the leader of
// the first gate also those of gates gone from the config and the
// HTTPRoutes of removed previews ("").
func TestPreviewOwner(t *testing.T) {
	cfg := &config.Config{Gates: []config.Gate{{Name: "shared-dev"}, {Name: "staging"}}}
	tests := []struct {
		leader string
		want   map[string]bool
	}{
		{"shared-dev", map[string]bool{"shared-dev": true, "staging": false, "": true, "removed": true}},
		{"staging", map[string]bool{"shared-dev": false, "staging": true, "": false, "removed": false}},
	}
	for _, tt := range tests {
		mine := previewOwner(cfg, tt.leader)
		for gate, want := range tt.want {
			if got := mine(gate); got != want {
				t.Errorf("the leader of %s keeps the previews of %q: %v, want %v", tt.leader, gate, got, want)
			}
		}
	}
}
