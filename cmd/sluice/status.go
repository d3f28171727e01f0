package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/internal/config"
	"github.com/sluice-gitops/sluice/reconcile"
)

// historyLen is how many commits up to the target tip status shows.
const historyLen = 5

type gateStatus struct {
	Name    string         `json:"name"`
	Path    string         `json:"path"`
	Target  string         `json:"targetBranch"`
	Tip     *commitStatus  `json:"targetTip,omitempty"`
	Queue   []commitStatus `json:"queue"`
	History []commitStatus `json:"history"`
	Error   string         `json:"error,omitempty"`
}

type commitStatus struct {
	SHA      string   `json:"sha"`
	Subject  string   `json:"subject"`
	Author   string   `json:"author"`
	Verdict  string   `json:"verdict"` // passed, failed, error or untested
	Duration string   `json:"duration,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	Skipped  bool     `json:"skipped,omitempty"`
	Revert   string   `json:"revertCommit,omitempty"`
	Reverted []string `json:"testedWithout,omitempty"`
	// Unverified: status had no verdict key to check the record with.
	Unverified bool `json:"unverified,omitempty"`
}

// statusFlags are the flags of `sluice status`, as the flag set parsed them.
type statusFlags struct {
	cfgFile, output, colour, kubeconfig *string
}

func defineStatusFlags(fs *pflag.FlagSet) *statusFlags {
	return &statusFlags{
		cfgFile:    fs.String("config", "sluice.yaml", "configuration `file`"),
		output:     fs.String("output", "text", "text or json"),
		colour:     fs.String("color", "auto", "auto, always or never"),
		kubeconfig: fs.String("kubeconfig", "", "kubeconfig `file` to read a generated verdict key from (default: $KUBECONFIG, ~/.kube/config, in-cluster)"),
	}
}

func statusCmd(ctx context.Context, f *statusFlags, stdout, stderr io.Writer) error {
	cfgFile, output, colour, kubeconfig := f.cfgFile, f.output, f.colour, f.kubeconfig
	if *output != "text" && *output != "json" {
		return usageError{fmt.Errorf("--output %q: want text or json", *output)}
	}
	useColour, err := wantProgress(*colour, stdout)
	if err != nil {
		return usageError{fmt.Errorf("--color: want auto, always or never")}
	}
	cfg, err := config.Load(*cfgFile)
	if err != nil {
		return err
	}
	repo, err := openRepo(ctx, cfg, false)
	if err != nil {
		return err
	}
	// Without the key, status still shows the notes, and says they are
	// unverified; an unreachable cluster does not hold it up for long.
	keyCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	key, err := loadVerdictKey(keyCtx, cfg, func() (*rest.Config, error) {
		rc, _, err := loadKubeconfig(*kubeconfig)
		return rc, err
	}, false)
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "warning: %v\nwarning: without the verdict key the verdicts shown are not verified\n", err)
	}
	var out []gateStatus
	for _, g := range cfg.Gates {
		out = append(out, gateState(ctx, repo, key, cfg.Repository.SourceBranch, g))
	}
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"source": cfg.Repository.SourceBranch, "gates": out}); err != nil {
			return err
		}
		return gateErrors(out)
	}
	printStatus(stdout, newProgress(stdout, useColour), cfg.Repository.SourceBranch, out)
	return gateErrors(out)
}

// gateErrors makes status fail when it could not tell a gate's state (the
// remote refused the credentials, the branches are gone or diverged): the
// output says what it could, and the exit code says it is not the whole story.
func gateErrors(gates []gateStatus) error {
	var errs []error
	for _, g := range gates {
		if g.Error != "" {
			errs = append(errs, fmt.Errorf("gate %s: %s", g.Name, g.Error))
		}
	}
	return errors.Join(errs...)
}

func gateState(ctx context.Context, repo *gitrepo.Repository, key *gitrepo.VerdictKey, source string, g config.Gate) gateStatus {
	st := gateStatus{Name: g.Name, Path: g.Path, Target: g.TargetBranch, Queue: []commitStatus{}, History: []commitStatus{}}
	if err := repo.Fetch(ctx, source, g.TargetBranch); err != nil {
		st.Error = err.Error()
		return st
	}
	tip, err := repo.Tip(ctx, g.TargetBranch)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	queue, err := repo.Queue(ctx, source, g.TargetBranch)
	if err != nil {
		st.Error = err.Error()
	}
	for _, c := range queue {
		st.Queue = append(st.Queue, describeCommit(repo, key, g.Name, c))
	}
	h := tip
	for i := 0; i < historyLen && !h.IsZero(); i++ {
		c, err := repo.Commit(ctx, h)
		if err != nil {
			break
		}
		cs := describeCommit(repo, key, g.Name, c)
		if i == 0 {
			st.Tip = &cs
		}
		st.History = append(st.History, cs)
		h = c.Parent
	}
	return st
}

// describeCommit says what gate's record on c is. With a key, only a
// record Sluice signed counts; anything else is "unverifiable" (Sluice
// ignores it and tests the commit). Without one, records are shown as the
// note says, "unverified".
func describeCommit(repo *gitrepo.Repository, key *gitrepo.VerdictKey, gate string, c gitrepo.Commit) commitStatus {
	cs := commitStatus{SHA: c.Hash.String(), Subject: c.Subject, Author: c.Author.Name, Verdict: "untested"}
	var rec gitrepo.Record
	if key != nil {
		r, state, err := repo.ReadRecord(context.TODO(), c.Hash, gate, key)
		switch {
		case err != nil:
			cs.Reason = "note unreadable: " + err.Error()
			return cs
		case state == gitrepo.RecordUnverifiable:
			cs.Verdict, cs.Reason = "unverifiable", "the note holds a record Sluice did not sign for this commit; it is ignored and the commit is tested"
			return cs
		case state == gitrepo.RecordAbsent:
			return cs
		}
		rec = r
	} else {
		note, _, err := repo.ReadNote(context.TODO(), c.Hash)
		if err != nil {
			cs.Reason = "note unreadable: " + err.Error()
			return cs
		}
		r, ok := note.Get(gate)
		if !ok {
			return cs
		}
		rec, cs.Unverified = r, true
	}
	cs.Verdict, cs.Reason, cs.Skipped = rec.Verdict, rec.Reason, rec.Skipped
	if d, ok := rec.Durations[reconcile.StepTotal]; ok {
		cs.Duration = d.Round(100 * time.Millisecond).String()
	}
	if !rec.RevertCommit.IsZero() {
		cs.Revert = rec.RevertCommit.String()
	}
	for _, h := range rec.Reverted {
		cs.Reverted = append(cs.Reverted, h.String())
	}
	return cs
}

func printStatus(w io.Writer, p *progress, source string, gates []gateStatus) {
	for i, g := range gates {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s %s  %s → %s\n", p.paint(bold, "gate"), p.paint(bold, g.Name), g.Path, g.Target)
		if g.Error != "" {
			fmt.Fprintf(w, "  %s %s\n", p.paint(red, "error:"), g.Error)
		}
		if g.Tip != nil {
			fmt.Fprintf(w, "  %-8s %s %s\n", g.Target, short7(g.Tip.SHA), quote(g.Tip.Subject))
		}
		switch {
		case len(g.Queue) == 0 && g.Error != "":
			// Not known: the error says why.
		case len(g.Queue) == 0:
			fmt.Fprintf(w, "  queue    empty: %s holds everything on %s that this gate renders\n", g.Target, source)
		default:
			fmt.Fprintf(w, "  queue    %d commit(s) on %s after %s, oldest first:\n", len(g.Queue), source, g.Target)
			for _, c := range g.Queue {
				printCommit(w, p, c)
			}
		}
		if len(g.History) > 0 {
			fmt.Fprintf(w, "  history  up to %s:\n", g.Target)
			for _, c := range g.History {
				printCommit(w, p, c)
			}
		}
	}
}

func printCommit(w io.Writer, p *progress, c commitStatus) {
	verdict := c.Verdict
	switch verdict {
	case "passed":
		verdict = p.paint(green, verdict)
	case "failed", "error", "unverifiable":
		verdict = p.paint(red, verdict)
	default:
		verdict = p.paint(dim, verdict)
	}
	extra := ""
	switch {
	case c.Skipped:
		extra = "same render as a tested candidate"
	case c.Revert != "":
		extra = "reverted by " + short7(c.Revert)
	case len(c.Reverted) > 0 && c.Verdict == "passed":
		extra = "tested without " + shortList(c.Reverted)
	}
	if c.Unverified {
		extra = strings.TrimSpace(extra + " (unverified: no verdict key)")
	}
	fmt.Fprintf(w, "    %s  %-40s %-14s %-*s %7s  %s\n", short7(c.SHA), clip(c.Subject, 40), clip(c.Author, 14),
		8+len(verdict)-visible(verdict), verdict, c.Duration, extra)
	if (c.Verdict == "failed" || c.Verdict == "error" || c.Verdict == "unverifiable") && c.Reason != "" {
		for _, l := range strings.Split(firstN(c.Reason, 4), "\n") {
			fmt.Fprintf(w, "             %s\n", p.paint(dim, l))
		}
	}
}

func short7(s string) string {
	if len(s) > 7 {
		return s[:7]
	}
	return s
}

func shortList(hs []string) string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = short7(h)
	}
	return strings.Join(out, ", ")
}

func firstN(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = append(lines[:n], "…")
	}
	return strings.Join(lines, "\n")
}
