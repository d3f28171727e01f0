package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-gitops/sluice/reconcile"
)

// monitor is what `run --listen` serves: /healthz (the process is up),
// /readyz (every gate drained at least once and its last drain succeeded),
// /metrics (Prometheus), POST /trigger (drain now: a forge's push webhook
// points here) and the status page, /status (statuspage.go).
type monitor struct {
	// wake makes the named gates drain now; nil in --once, which drains anyway.
	wake func(gates ...string)
	// status keeps what /status shows.
	status *statusStore

	reg          *prometheus.Registry
	verdicts     *prometheus.CounterVec
	durations    *prometheus.HistogramVec
	reverts      *prometheus.CounterVec
	fastForwards *prometheus.CounterVec
	up           *prometheus.GaugeVec
	lastDrain    *prometheus.GaugeVec

	mu    sync.Mutex
	gates []string          // in the config's order
	state map[string]string // gate -> "" when its last drain succeeded, else why not
	// electing: --leader-elect, and leading says which gates this replica
	// leads now; without it, it leads them all.
	electing bool
	leading  map[string]bool
}

func newMonitor(gates []string) *monitor {
	m := &monitor{
		reg: prometheus.NewRegistry(),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_verdicts_total",
			Help: "Verdicts on candidates, by gate and verdict (passed, failed, error).",
		}, []string{"gate", "verdict"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_candidate_duration_seconds",
			Help:    "How long a candidate took from render to verdict, by gate and verdict.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 15), // 50ms to about 14m
		}, []string{"gate", "verdict"}),
		reverts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_reverts_total",
			Help: "Revert commits pushed to the source branch (or found there), by gate.",
		}, []string{"gate"}),
		fastForwards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_fast_forwards_total",
			Help: "Fast-forwards of the target branch, by gate.",
		}, []string{"gate"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_gate_up",
			Help: "1 if the gate's last drain succeeded, 0 if it stopped or hit an infrastructure error.",
		}, []string{"gate"}),
		lastDrain: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_gate_last_drain_timestamp_seconds",
			Help: "When the gate's last drain ended, as a Unix time.",
		}, []string{"gate"}),
		gates:   slices.Clone(gates),
		state:   map[string]string{},
		leading: map[string]bool{},
		status:  newStatusStore(gates),
	}
	m.reg.MustRegister(m.verdicts, m.durations, m.reverts, m.fastForwards, m.up, m.lastDrain,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, g := range gates {
		m.state[g] = "not drained yet"
		m.up.WithLabelValues(g).Set(0)
		for _, v := range []reconcile.Verdict{reconcile.Passed, reconcile.Failed, reconcile.Error} {
			m.verdicts.WithLabelValues(g, string(v))
		}
		m.reverts.WithLabelValues(g)
		m.fastForwards.WithLabelValues(g)
	}
	return m
}

// event counts a step of the queue (Runner.OnEvent).
func (m *monitor) event(e reconcile.Event) {
	switch e.Step {
	case "verdict":
		m.verdicts.WithLabelValues(e.Gate, string(e.Verdict)).Inc()
		if e.Verdict != reconcile.Error {
			m.durations.WithLabelValues(e.Gate, string(e.Verdict)).Observe(e.Took.Seconds())
		}
	case "revert":
		m.reverts.WithLabelValues(e.Gate).Inc()
	case "fast-forward":
		m.fastForwards.WithLabelValues(e.Gate).Inc()
	}
	m.status.event(e)
}

// drained records the result of a gate's drain (Runner.OnDrain).
func (m *monitor) drained(gate string, err error) {
	m.lastDrain.WithLabelValues(gate).Set(float64(time.Now().Unix()))
	m.status.drained(gate, err)
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case err == nil:
		m.state[gate] = ""
		m.up.WithLabelValues(gate).Set(1)
	case errors.Is(err, reconcile.ErrGateStopped):
		m.state[gate] = "stopped: " + err.Error()
		m.up.WithLabelValues(gate).Set(0)
	default:
		m.state[gate] = "retrying: " + err.Error()
		m.up.WithLabelValues(gate).Set(0)
	}
}

func (m *monitor) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		m.mu.Lock()
		var bad []string
		for g, why := range m.state {
			if why != "" {
				bad = append(bad, "gate "+g+": "+firstLine(why))
			}
		}
		m.mu.Unlock()
		if len(bad) > 0 {
			slices.Sort(bad)
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, strings.Join(bad, "\n"))
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /trigger", func(w http.ResponseWriter, _ *http.Request) {
		// The request carries nothing Sluice trusts: it only moves the next
		// fetch earlier, so a webhook needs no secret here.
		if m.wake == nil {
			http.Error(w, "not running as a daemon", http.StatusConflict)
			return
		}
		led, others := m.ledGates()
		if len(led) == 0 {
			fmt.Fprintln(w, "this replica leads no gate now: nothing to drain here")
		} else {
			m.wake(led...)
			w.WriteHeader(http.StatusAccepted)
			fmt.Fprintln(w, "draining now: "+strings.Join(led, ", "))
		}
		if len(others) > 0 {
			// Each drains at its leader's next poll, or when a trigger
			// reaches that replica.
			fmt.Fprintln(w, "led by another replica: "+strings.Join(others, ", "))
		}
	})
	m.status.register(mux)
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	return mux
}

// serveMonitor listens on addr and serves m until ctx is done. A listen
// error is returned at once, so a taken port stops `run` before it starts.
func serveMonitor(ctx context.Context, addr string, m *monitor, log *slog.Logger) (wait func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: m.handler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("health and metrics server stopped", "error", err)
		}
	}()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Info("serving /healthz, /readyz, /metrics, /status and POST /trigger", "addr", ln.Addr().String())
	return func() { <-done }, nil
}

// ledGates are the gates this process drains now, and those another
// replica leads (--leader-elect), in the config's order.
func (m *monitor) ledGates() (led, others []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, g := range m.gates {
		if !m.electing || m.leading[g] {
			led = append(led, g)
		} else {
			others = append(others, g)
		}
	}
	return led, others
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
