package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Leader election per gate: with `run --leader-elect` a gate is drained
// only while this process holds the gate's Lease (sluice-<gate>), so
// replicas share the gates and two processes never drain the same one.
// Losing the Lease cancels the gate's drain; the test namespace it had is
// removed by the drain's own cleanup or, if the process died, by the next
// holder's cleanup of leftovers.

// Controller defaults (controller-runtime's): lease 15s, renew 10s, retry 2s.
const (
	defaultLeaseDuration = 15 * time.Second
	defaultRenewDeadline = 10 * time.Second
	defaultRetryPeriod   = 2 * time.Second
	defaultLeaseNS       = "sluice-system"
	podNamespaceFile     = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
)

type leaderFlags struct {
	enabled                   *bool
	namespace                 *string
	lease, renew, retryPeriod *time.Duration
}

func defineLeaderFlags(fs *pflag.FlagSet) *leaderFlags {
	return &leaderFlags{
		enabled:     fs.Bool("leader-elect", false, "drain each gate only while holding its Lease sluice-<gate>, so replicas share the gates (not with --once)"),
		namespace:   fs.String("leader-elect-namespace", "", "`namespace` of the gates' Leases (default: the pod's namespace, else sluice-system)"),
		lease:       fs.Duration("leader-elect-lease-duration", defaultLeaseDuration, "how long a gate's Lease lasts without renewal before another replica may take the gate"),
		renew:       fs.Duration("leader-elect-renew-deadline", defaultRenewDeadline, "how long the holder keeps retrying a renewal before it gives the gate up"),
		retryPeriod: fs.Duration("leader-elect-retry-period", defaultRetryPeriod, "how often replicas try to take or renew a gate's Lease"),
	}
}

// check rejects flag combinations that make no sense. --once drains every
// gate and exits: waiting for leases there would make it a daemon with
// extra steps, so it is a usage error.
func (l *leaderFlags) check(once bool) error {
	if !*l.enabled {
		return nil
	}
	if once {
		return errors.New("--leader-elect is for the daemon: it cannot be combined with --once")
	}
	if *l.retryPeriod <= 0 || *l.renew <= *l.retryPeriod || *l.lease <= *l.renew {
		return fmt.Errorf("--leader-elect-lease-duration (%s) must be greater than --leader-elect-renew-deadline (%s), which must be greater than --leader-elect-retry-period (%s) > 0",
			*l.lease, *l.renew, *l.retryPeriod)
	}
	return nil
}

// leaseNamespace is --leader-elect-namespace, else the pod's, else sluice-system.
func (l *leaderFlags) leaseNamespace() string {
	if *l.namespace != "" {
		return *l.namespace
	}
	if b, err := os.ReadFile(podNamespaceFile); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return defaultLeaseNS
}

// leaderIdentity names this process in the Leases: host name and pid, so
// two processes on one host differ.
func leaderIdentity() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return fmt.Sprintf("%s_%d", host, os.Getpid())
}

// leaseName is the Lease of gate.
func leaseName(gate string) string { return "sluice-" + gate }

// lead returns the reconcile.Runner.Lead hook, or nil without --leader-elect.
// mon (nil without --listen) reports on /readyz only the gates this process
// leads: a gate another replica drains does not keep this one unready.
// beside (nil: nothing) runs next to each gate for as long as this process
// leads it: the gate's previews (preview_sync.go), so that two replicas
// never keep the same preview.
func (l *leaderFlags) lead(restCfg *rest.Config, log *slog.Logger, mon *monitor, beside func(context.Context, string)) (func(context.Context, string, func(context.Context)), error) {
	if !*l.enabled {
		return nil, nil
	}
	rc := rest.CopyConfig(restCfg)
	rc.Timeout = *l.renew / 2 // a hung request must not outlive the renewal
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("leader election: %w", err)
	}
	ns, id := l.leaseNamespace(), leaderIdentity()
	log.Info("leader election per gate", "namespace", ns, "identity", id)
	return l.leadWith(client, ns, id, log, mon, beside), nil
}

// leadWith is lead's hook over client's Leases in namespace ns, as id.
func (l *leaderFlags) leadWith(client kubernetes.Interface, ns, id string, log *slog.Logger, mon *monitor, beside func(context.Context, string)) func(context.Context, string, func(context.Context)) {
	return func(ctx context.Context, gate string, run func(context.Context)) {
		lock := &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: ns, Name: leaseName(gate)},
			Client:     client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: id},
		}
		mon.follow(gate)
		for ctx.Err() == nil {
			leading := make(chan context.Context, 1)
			le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
				Lock:            lock,
				Name:            gate,
				LeaseDuration:   *l.lease,
				RenewDeadline:   *l.renew,
				RetryPeriod:     *l.retryPeriod,
				ReleaseOnCancel: true,
				Callbacks: leaderelection.LeaderCallbacks{
					// Never blocks: the gate runs in this goroutine below.
					OnStartedLeading: func(lctx context.Context) { leading <- lctx },
					OnStoppedLeading: func() {},
				},
			})
			if err != nil { // only for bad durations, which check rejected
				log.Error("leader election", "gate", gate, "error", err)
				return
			}
			// The elector's context is its own: at shutdown the Lease is
			// released (ReleaseOnCancel) only once the gate and what runs
			// beside it have stopped, so the next holder never overlaps
			// them. While waiting for the lead, ctx ends the election.
			electCtx, stopElector := context.WithCancel(context.WithoutCancel(ctx))
			unhook := context.AfterFunc(ctx, stopElector)
			done := make(chan struct{})
			go func() { defer close(done); le.Run(electCtx) }()
			select {
			case lctx := <-leading:
				unhook()
				term, endTerm := context.WithCancel(lctx)
				endOnCtx := context.AfterFunc(ctx, endTerm)
				log.Info("leading gate", "gate", gate, "lease", ns+"/"+leaseName(gate))
				mon.lead(gate)
				besideDone := make(chan struct{})
				go func() {
					defer close(besideDone)
					if beside != nil {
						beside(term, gate)
					}
				}()
				run(term)
				endTerm()
				<-besideDone
				endOnCtx()
				mon.follow(gate)
				stopElector() // releases the Lease: nothing of this term runs any more
				<-done
				if ctx.Err() == nil {
					log.Warn("lost the lead of gate", "gate", gate, "lease", ns+"/"+leaseName(gate))
				}
			case <-done:
			}
			unhook()
			stopElector()
		}
	}
}

// follow marks gate as led by another replica: not this one's to report,
// nor to wake.
func (m *monitor) follow(gate string) { m.setLeading(gate, false, "") }

// lead marks gate as this replica's: unready until it has drained.
func (m *monitor) lead(gate string) { m.setLeading(gate, true, "not drained yet") }

func (m *monitor) setLeading(gate string, lead bool, state string) {
	if m == nil {
		return
	}
	m.up.WithLabelValues(gate).Set(0)
	m.status.leading(gate, lead)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state[gate] = state
	m.electing = true
	m.leading[gate] = lead
}
