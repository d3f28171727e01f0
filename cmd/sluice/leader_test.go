package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// TestLeaderElectFlags: the flags of leader election keep the controller
// defaults, and combinations that cannot work are usage errors (exit 2)
// before anything is read or started.
func TestLeaderElectFlags(t *testing.T) {
	root := newRootCommand(io.Discard, io.Discard)
	run, _, err := root.Find([]string{"run"})
	if err != nil {
		t.Fatal(err)
	}
	for flag, def := range map[string]string{
		"leader-elect": "false", "leader-elect-namespace": "",
		"leader-elect-lease-duration": "15s", "leader-elect-renew-deadline": "10s", "leader-elect-retry-period": "2s",
	} {
		f := run.Flags().Lookup(flag)
		if f == nil {
			t.Errorf("sluice run has no --%s", flag)
		} else if f.DefValue != def {
			t.Errorf("--%s defaults to %q, want %q", flag, f.DefValue, def)
		}
	}

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"with --once", []string{"--once", "--leader-elect"}, "--leader-elect is for the daemon: it cannot be combined with --once"},
		{"renew not under the lease", []string{"--leader-elect", "--leader-elect-lease-duration=5s", "--leader-elect-renew-deadline=5s"}, "--leader-elect-lease-duration (5s) must be greater than --leader-elect-renew-deadline (5s)"},
		{"retry not under renew", []string{"--leader-elect", "--leader-elect-retry-period=10s"}, "which must be greater than --leader-elect-retry-period (10s) > 0"},
		{"a zero retry", []string{"--leader-elect", "--leader-elect-retry-period=0s"}, "--leader-elect-retry-period (0s) > 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := sluice(t, append([]string{"run", "--config", "/nonexistent/sluice.yaml"}, tt.args...)...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q does not say %q", stderr, tt.want)
			}
		})
	}
}

// leaseServer is a stand-in API server for Leases that, like the real one,
// refuses an update made from an old read (resourceVersion): a replica
// whose Lease another took cannot renew it.
func leaseServer() *fake.Clientset {
	c := fake.NewClientset()
	gvr := coordinationv1.SchemeGroupVersion.WithResource("leases")
	rv := 0
	c.PrependReactor("*", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		w, ok := a.(k8stesting.CreateAction) // also an update's
		if !ok || a.GetVerb() != "create" && a.GetVerb() != "update" {
			return false, nil, nil
		}
		o := w.GetObject().(metav1.Object)
		if a.GetVerb() == "update" {
			cur, err := c.Tracker().Get(gvr, o.GetNamespace(), o.GetName())
			if err == nil && cur.(metav1.Object).GetResourceVersion() != o.GetResourceVersion() {
				return true, nil, apierrors.NewConflict(gvr.GroupResource(), o.GetName(), errors.New("the object has been modified"))
			}
		}
		rv++
		o.SetResourceVersion(strconv.Itoa(rv))
		return false, nil, nil // the tracker stores it
	})
	return c
}

// termLog records what each replica runs for each gate: the gate itself
// and its previews beside it.
type termLog struct {
	mu       sync.Mutex
	active   map[string]string // gate/what -> the replica running it
	history  []string
	overlaps []string
}

// work runs until ctx ends, then takes a while to stop, as a preview's
// apply or a test namespace's removal does after its context ends.
func (l *termLog) work(replica, what string) func(ctx context.Context, gate string) {
	return func(ctx context.Context, gate string) {
		key := gate + "/" + what
		l.mu.Lock()
		if other := l.active[key]; other != "" {
			l.overlaps = append(l.overlaps, fmt.Sprintf("%s started %s while %s ran it", replica, key, other))
		}
		l.active[key] = replica
		l.history = append(l.history, replica+" starts "+key)
		l.mu.Unlock()
		<-ctx.Done()
		time.Sleep(300 * time.Millisecond)
		l.mu.Lock()
		if l.active[key] == replica {
			delete(l.active, key)
		}
		l.history = append(l.history, replica+" stops "+key)
		l.mu.Unlock()
	}
}

func (l *termLog) running(key string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active[key]
}

// TestLeaderTermsNeverOverlap: with --leader-elect a gate's drain and its
// previews (preview_sync.go) run only while the replica holds the gate's
// Lease; replicas share the gates, and a replica that stops releases a
// Lease only once the gate and its previews have stopped, so the next
// holder never runs them at the same time. /trigger follows the Leases.
func TestLeaderTermsNeverOverlap(t *testing.T) {
	client := leaseServer()
	enabled, ns := true, ""
	lease, renew, retry := 3*time.Second, 2*time.Second, 50*time.Millisecond
	flags := &leaderFlags{enabled: &enabled, namespace: &ns, lease: &lease, renew: &renew, retryPeriod: &retry}
	log := slog.New(slog.DiscardHandler)
	terms := &termLog{active: map[string]string{}}
	gates := []string{"shared-dev", "staging"}

	type replica struct {
		mon    *monitor
		cancel context.CancelFunc
		done   sync.WaitGroup
	}
	start := func(name string, gates ...string) *replica {
		r := &replica{mon: newMonitor([]string{"shared-dev", "staging"})}
		r.mon.wake = func(...string) {}
		hook := flags.leadWith(client, "sluice-system", name, log, r.mon, terms.work(name, "previews"))
		ctx, cancel := context.WithCancel(t.Context())
		r.cancel = cancel
		for _, g := range gates {
			r.done.Go(func() { hook(ctx, g, func(ctx context.Context) { terms.work(name, "drain")(ctx, g) }) })
		}
		t.Cleanup(func() { cancel(); r.done.Wait() })
		return r
	}
	waitUntil := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("never: %s; history:\n%s", what, strings.Join(terms.history, "\n"))
			}
		}
	}
	runs := func(replica string, gates ...string) func() bool {
		return func() bool {
			for _, g := range gates {
				if terms.running(g+"/drain") != replica || terms.running(g+"/previews") != replica {
					return false
				}
			}
			return true
		}
	}
	trigger := func(r *replica) string {
		rec := httptest.NewRecorder()
		r.mon.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/trigger", nil))
		return rec.Body.String()
	}

	a := start("replica-a", "staging")
	waitUntil("replica-a leads staging", runs("replica-a", "staging"))
	b := start("replica-b", gates...)
	waitUntil("replica-b leads shared-dev", runs("replica-b", "shared-dev"))
	if got := terms.running("staging/previews"); got != "replica-a" {
		t.Errorf("staging's previews run on %q while replica-a holds its Lease", got)
	}
	if got := trigger(b); !strings.Contains(got, "draining now: shared-dev\n") || !strings.Contains(got, "led by another replica: staging") {
		t.Errorf("POST /trigger on replica-b answers %q", got)
	}

	a.cancel() // a rolling update stops replica-a
	a.done.Wait()
	waitUntil("replica-b takes staging over", runs("replica-b", gates...))
	if got := trigger(b); !strings.Contains(got, "draining now: shared-dev, staging") {
		t.Errorf("POST /trigger on replica-b after the handover answers %q", got)
	}
	if got := trigger(a); !strings.Contains(got, "leads no gate now") {
		t.Errorf("POST /trigger on the stopped replica-a answers %q", got)
	}

	// Someone else takes staging's Lease: replica-b, still running, stops
	// staging's drain and previews when it cannot renew, and keeps
	// shared-dev.
	leases := client.CoordinationV1().Leases("sluice-system")
	l, err := leases.Get(t.Context(), "sluice-staging", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	intruder, hour, now := "intruder", int32(3600), metav1.NewMicroTime(time.Now())
	l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &intruder, &hour, &now
	if _, err := leases.Update(t.Context(), l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil("replica-b stops staging once its Lease is gone", func() bool {
		return terms.running("staging/drain") == "" && terms.running("staging/previews") == ""
	})
	if !runs("replica-b", "shared-dev")() {
		t.Error("replica-b stopped shared-dev too")
	}
	if got := trigger(b); !strings.Contains(got, "draining now: shared-dev\n") || !strings.Contains(got, "led by another replica: staging") {
		t.Errorf("POST /trigger on replica-b without staging's Lease answers %q", got)
	}
	b.cancel()
	b.done.Wait()

	terms.mu.Lock()
	defer terms.mu.Unlock()
	if len(terms.overlaps) > 0 {
		t.Errorf("two replicas ran one gate's work at once:\n%s\nhistory:\n%s", strings.Join(terms.overlaps, "\n"), strings.Join(terms.history, "\n"))
	}
	list, err := leases.List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range list.Items {
		names = append(names, l.Name)
	}
	if diff := cmp.Diff([]string{"sluice-shared-dev", "sluice-staging"}, names); diff != "" {
		t.Errorf("Leases (-want +got):\n%s", diff)
	}
}
