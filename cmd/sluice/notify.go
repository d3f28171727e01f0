package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gitops/sluice/internal/config"
	"github.com/sluice-gitops/sluice/notify"
	"github.com/sluice-gitops/sluice/reconcile"
)

// notifyCloseTimeout bounds how long `run` waits at exit for queued
// notifications (a failed verdict of `run --once` must still be told).
const notifyCloseTimeout = 30 * time.Second

// startNotifier starts posting to the config's `notify:` webhooks and hooks
// them onto r's events, keeping r's OnEvent and OnDrain. Delivery failures
// and drops are logged, without URL or token. The returned stop waits for
// queued messages, at most notifyCloseTimeout. With no webhook it does
// nothing.
func startNotifier(cfg *config.Config, r *reconcile.Runner, log *slog.Logger) (stop func(), err error) {
	hooks, err := cfg.Webhooks()
	if err != nil || len(hooks) == 0 {
		return func() {}, err
	}
	opts := notify.DefaultOptions()
	opts.Report = func(rep notify.Report) {
		l := log.With("webhook", rep.Webhook, "kind", rep.Message.Kind, "gate", rep.Message.Gate)
		if rep.Message.Commit != "" {
			l = l.With("commit", shortHash(rep.Message.Commit))
		}
		switch {
		case rep.Dropped > 0:
			l.Warn("notification dropped, queue full", "dropped", rep.Dropped)
		case rep.Err != nil:
			l.Warn("notification not delivered", "attempts", rep.Attempts, "error", rep.Err)
		default:
			l.Debug("notification delivered", "attempts", rep.Attempts)
		}
	}
	n := notify.New(hooks, opts)
	w := newWatcher(n.Notify)
	event, drained := r.OnEvent, r.OnDrain
	r.OnEvent = func(e reconcile.Event) {
		if event != nil {
			event(e)
		}
		w.event(e)
	}
	r.OnDrain = func(gate string, err error) {
		if drained != nil {
			drained(gate, err)
		}
		w.drained(gate, err)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), notifyCloseTimeout)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			log.Warn("notifications abandoned at exit", "error", err)
		}
	}, nil
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// maxSent bounds how many commits a watcher remembers having told about.
const maxSent = 10000

// watcher turns the runner's events into one message per verdict.
//
// A failed verdict's event does not say whether it lasts, nor which revert
// it caused: the serial runner reports the verdict, then pushes the revert
// ("revert" event), then writes the note; the speculative one pushes the
// revert first. So a failure is held until its revert is seen (then sent
// with it) or until the gate's drain ends: without an error (sent without
// a revert: the gate does not revert, or someone else already did), or with
// one (dropped: nothing was written, the commit is tested again and its
// verdict comes again). A commit is told about once per gate.
type watcher struct {
	send func(notify.Message)

	mu       sync.Mutex
	pending  map[string]notify.Message // gate/commit -> a failure waiting for its revert
	reverted map[string]string         // gate/commit -> a revert seen before the verdict
	sent     map[string]bool           // gate/commit -> told
	order    []string                  // sent's keys, oldest first
	stopped  map[string]string         // gate -> the stop reason last told
}

func newWatcher(send func(notify.Message)) *watcher {
	return &watcher{
		send:     send,
		pending:  map[string]notify.Message{},
		reverted: map[string]string{},
		sent:     map[string]bool{},
		stopped:  map[string]string{},
	}
}

func (w *watcher) event(e reconcile.Event) {
	key := e.Gate + "/" + e.Commit.Hash.String()
	var out []notify.Message
	w.mu.Lock()
	switch {
	case e.Step == "verdict" && e.Verdict == reconcile.Failed:
		if w.sent[key] {
			break
		}
		m := notify.Message{
			Kind: notify.Failed, Gate: e.Gate, Commit: e.Commit.Hash.String(), Subject: e.Commit.Subject,
			Author: notify.Person{Name: e.Commit.Author.Name, Email: e.Commit.Author.Email}, Reason: e.Detail,
		}
		rev, ok := w.reverted[key]
		if !e.Revert.IsZero() {
			rev, ok = e.Revert.String(), true
		}
		if ok {
			delete(w.reverted, key)
			m.RevertCommit = rev
			out = append(out, w.sendLocked(key, m))
			break
		}
		w.pending[key] = m
	case e.Step == "revert" && !e.Revert.IsZero():
		rev := e.Revert.String()
		if m, ok := w.pending[key]; ok {
			delete(w.pending, key)
			m.RevertCommit = rev
			out = append(out, w.sendLocked(key, m))
		} else if !w.sent[key] {
			w.reverted[key] = rev
		}
	}
	w.mu.Unlock()
	for _, m := range out {
		w.send(m)
	}
}

func (w *watcher) drained(gate string, err error) {
	var out []notify.Message
	w.mu.Lock()
	prefix := gate + "/"
	for key, m := range w.pending {
		if !strings.HasPrefix(key, prefix) {
			continue
		}
		delete(w.pending, key)
		if err == nil {
			out = append(out, w.sendLocked(key, m))
		}
	}
	for key := range w.reverted {
		if strings.HasPrefix(key, prefix) {
			delete(w.reverted, key)
		}
	}
	switch {
	case err == nil:
		delete(w.stopped, gate)
	case errors.Is(err, reconcile.ErrGateStopped):
		reason := err.Error()
		var se *reconcile.StoppedError
		if errors.As(err, &se) {
			reason = se.Reason
		}
		if w.stopped[gate] != reason {
			w.stopped[gate] = reason
			out = append(out, notify.Message{Kind: notify.Stopped, Gate: gate, Reason: reason})
		}
	}
	w.mu.Unlock()
	for _, m := range out {
		w.send(m)
	}
}

// sendLocked marks key told and returns m, for sending once w.mu is free.
func (w *watcher) sendLocked(key string, m notify.Message) notify.Message {
	w.sent[key] = true
	w.order = append(w.order, key)
	if len(w.order) > maxSent {
		delete(w.sent, w.order[0])
		w.order = w.order[1:]
	}
	return m
}
