package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gitops/sluice/forge"
	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/internal/config"
	"github.com/sluice-gitops/sluice/manifests"
	"github.com/sluice-gitops/sluice/reconcile"
	"github.com/sluice-gitops/sluice/testenv"
)

// forgeFlushTimeout bounds how long `run` waits at exit for queued commit
// statuses (the verdicts of `run --once` must still reach the forge).
const forgeFlushTimeout = 30 * time.Second

// startForge posts a commit status per queued commit and gate to the
// config's `forge:`, from r's events, keeping r's OnEvent. Posting never
// blocks the gate: statuses wait in a bounded queue (forge.Poster). A forge
// that refuses the token is logged once per status context, as the
// configuration error it is; verdicts are untouched. The returned stop
// waits for queued statuses, at most forgeFlushTimeout. With no forge it
// does nothing. The poster it returns (nil with no forge) also carries the
// pull request previews (pulls.go).
func startForge(ctx context.Context, cfg *config.Config, r *reconcile.Runner, publicURL string, log *slog.Logger) (stop func(), p *forge.Poster, err error) {
	fc := cfg.Forge
	if fc == nil {
		return func() {}, nil, nil
	}
	token, err := fc.Token()
	if err != nil {
		return nil, nil, errors.New(cfg.File() + ": " + err.Error())
	}
	f, err := forge.New(forge.Options{
		Type: forge.Type(fc.Type), URL: fc.URL, Repository: fc.Repository, Token: token,
		HTTPClient: &http.Client{Timeout: forge.DefaultRequestTimeout},
	})
	if err != nil {
		return nil, nil, errors.New(cfg.File() + ": " + err.Error())
	}
	var logged sync.Map // status context -> an access error was logged
	opts := forge.DefaultPosterOptions()
	opts.OnError = func(s forge.Status, err error) {
		var access *forge.AccessError
		if errors.As(err, &access) {
			if _, seen := logged.LoadOrStore(s.Context, true); !seen {
				log.Error("forge refused a commit status: fix forge: in the config (token or repository); verdicts are kept in Git notes all the same",
					"forge", f.Name(), "context", s.Context, "commit", shortSHA(s.Commit), "http", access.Code, "error", err)
			}
			return
		}
		log.Warn("commit status not posted", "forge", f.Name(), "context", s.Context, "commit", shortSHA(s.Commit), "state", s.State, "error", err)
	}
	p = forge.NewPoster(f, opts)
	postCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); p.Run(postCtx) }()

	feed := newForgeFeed(p, publicURL)
	for _, g := range r.Gates {
		feed.gates[g.Name] = forgeGate{
			target: g.Target,
			serial: (g.Strategy == "" || g.Strategy == "serial") && !g.ReuseEnvironment,
		}
	}
	repo, source := r.Repo, r.Source
	feed.queue = func(target string) ([]gitrepo.Commit, error) { return repo.Queue(postCtx, source, target) }
	event := r.OnEvent
	r.OnEvent = func(e reconcile.Event) {
		if event != nil {
			event(e)
		}
		feed.event(e)
	}
	log.Info("posting commit statuses", "forge", f.Name())
	return func() {
		fctx, fcancel := context.WithTimeout(context.Background(), forgeFlushTimeout)
		defer fcancel()
		if err := p.Flush(fctx); err != nil {
			log.Warn("commit statuses abandoned at exit", "forge", f.Name(), "error", err)
		}
		cancel()
		<-done
	}, p, nil
}

// maxForgeCommits bounds the commits a forgeFeed remembers.
const maxForgeCommits = 100000

// What a commit's status says so far; each replaces only the ones before it.
const (
	markQueued = 1 + iota
	markTesting
	markVerdict
)

type forgeGate struct {
	target string
	serial bool // the test namespace is manifests.TestNamespace's (not a reused one)
}

// forgeFeed turns the runner's events into commit statuses.
type forgeFeed struct {
	p         *forge.Poster
	targetURL string
	gates     map[string]forgeGate
	// queue lists a target branch's queue, to mark the commits after the
	// one under test "queued".
	queue func(target string) ([]gitrepo.Commit, error)

	mu     sync.Mutex
	posted map[string]int // gate/commit -> the last kind of status posted: markQueued, markTesting, markVerdict
	listed chan string    // gates whose queue to mark
}

func newForgeFeed(p *forge.Poster, publicURL string) *forgeFeed {
	w := &forgeFeed{p: p, gates: map[string]forgeGate{}, posted: map[string]int{}, listed: make(chan string, 16)}
	if publicURL != "" {
		w.targetURL = strings.TrimSuffix(publicURL, "/") + "/status/" // + <gate>/<full sha>: statuspage.go
	}
	return w
}

func statusContext(gate string) string { return "sluice/" + gate }

func (w *forgeFeed) event(e reconcile.Event) {
	sha := e.Commit.Hash.String()
	if e.Commit.Hash.IsZero() {
		return
	}
	g := w.gates[e.Gate]
	s := forge.Status{Commit: sha, Context: statusContext(e.Gate), TargetURL: w.link(e.Gate, sha)}
	mark := markVerdict
	switch e.Step {
	case "verdict":
		reason := firstLine(e.Detail)
		switch e.Verdict {
		case reconcile.Passed:
			s.State, s.Description = forge.Success, "passed"
			if reason != "" {
				s.Description += ": " + reason
			}
		case reconcile.Failed:
			s.State, s.Description = forge.Failure, "rejected: "+reason
			if !e.Revert.IsZero() {
				s.Description = "reverted: " + reason
			}
		default:
			// An error is the infrastructure's: the commit is tested again.
			s.State, s.Description = forge.Pending, "retrying: "+reason
		}
	case reconcile.StepRender, testenv.StepApply, testenv.StepHealth, testenv.StepTests, testenv.StepCommands:
		w.mu.Lock()
		seen := w.posted[e.Gate+"/"+sha] >= markTesting
		w.mu.Unlock()
		if seen {
			return
		}
		mark = markTesting
		s.State, s.Description = forge.Pending, "testing"
		if g.serial {
			s.Description = "testing in " + manifests.TestNamespace(e.Gate, sha)
		}
		select {
		case w.listed <- e.Gate:
			go w.markQueued(e.Gate, sha)
		default:
		}
	default:
		return
	}
	w.mu.Lock()
	if len(w.posted) > maxForgeCommits {
		clear(w.posted)
	}
	w.posted[e.Gate+"/"+sha] = mark
	w.p.Post(s)
	w.mu.Unlock()
}

// markQueued posts "queued" on the commits after the one under test that
// got no status yet. It runs beside the gate, never in its way.
func (w *forgeFeed) markQueued(gate, testing string) {
	defer func() { <-w.listed }()
	g, ok := w.gates[gate]
	if !ok || w.queue == nil {
		return
	}
	q, err := w.queue(g.target)
	if err != nil {
		return // the next drain lists it again
	}
	after := false
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range q {
		sha := c.Hash.String()
		if sha == testing {
			after = true
			continue
		}
		if !after || w.posted[gate+"/"+sha] != 0 {
			continue
		}
		w.posted[gate+"/"+sha] = markQueued
		w.p.Post(forge.Status{Commit: sha, Context: statusContext(gate), State: forge.Pending, Description: "queued", TargetURL: w.link(gate, sha)})
	}
}

func shortSHA(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
