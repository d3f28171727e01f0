package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-gitops/sluice/gitrepo"
)

// events is what the test saw, in the order it saw it: lines of each
// daemon's stdout and stderr, changes of the Lease holder, the kill.
type events struct {
	mu    sync.Mutex
	lines []event
}

type event struct{ from, text string }

func (e *events) add(from, text string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lines = append(e.lines, event{from, text})
}

func (e *events) snapshot() []event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]event(nil), e.lines...)
}

// index is the first event from from containing text after start, or -1.
func (e *events) index(from, text string, start int) int {
	for i, ev := range e.snapshot() {
		if i >= start && ev.from == from && strings.Contains(ev.text, text) {
			return i
		}
	}
	return -1
}

// lineWriter adds each complete line written to it as an event.
type lineWriter struct {
	ev   *events
	from string
	buf  []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			return len(p), nil
		}
		w.ev.add(w.from, string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}

// daemon is a `sluice run --leader-elect` process in a process group of its
// own, so SIGKILL takes its render workers too, as a pod's death would.
type daemon struct {
	name, identity string
	cmd            *exec.Cmd
	done           chan struct{}
}

// Short leases so a handover takes seconds; renewals still have room on a
// busy machine running the race detector.
var leaseFlags = []string{"--leader-elect-lease-duration=6s", "--leader-elect-renew-deadline=4s", "--leader-elect-retry-period=1s"}

func startDaemon(t *testing.T, s *scenario, name, config, leaseNS string, ev *events) *daemon {
	t.Helper()
	args := append([]string{"run", "--config", config, "--kubeconfig", s.cluster.Kubeconfig, "--progress", "always",
		"--leader-elect", "--leader-elect-namespace", leaseNS}, leaseFlags...)
	cmd := exec.Command(sluiceBin, args...)
	cmd.Stdout = &lineWriter{ev: ev, from: name}
	cmd.Stderr = &lineWriter{ev: ev, from: name + "-log"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	d := &daemon{name: name, identity: fmt.Sprintf("%s_%d", host, cmd.Process.Pid), cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.done) }()
	t.Cleanup(func() { d.signal(syscall.SIGKILL) })
	return d
}

func (d *daemon) signal(sig syscall.Signal) {
	select {
	case <-d.done:
		return
	default:
	}
	_ = syscall.Kill(-d.cmd.Process.Pid, sig)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
	}
}

// waitFor polls cond every 100ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLeaderElectionHandsOverAGate: two `sluice run --leader-elect` share one
// gate. Only the Lease holder drains it; the other prints nothing until the
// holder is killed with SIGKILL while a candidate is under test, then takes
// the gate over and ends where an uninterrupted run ends: a3 and a4 passed,
// b4 failed and reverted exactly once, staging at the revert, no namespace
// left.
func TestLeaderElectionHandsOverAGate(t *testing.T) {
	s := newScenario(t, scenarioOptions{})
	ctx := context.Background()
	leaseNS := "sluice-le-" + randHex(3)
	if _, err := s.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: leaseNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.kube.CoreV1().Namespaces().Delete(context.Background(), leaseNS, metav1.DeleteOptions{}) })
	// The second replica has a cache of its own, as a second pod would.
	cfgB := filepath.Join(t.TempDir(), "sluice.yaml")
	b, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgB, b, 0o600); err != nil {
		t.Fatal(err)
	}

	ev := &events{}
	holder := func() string {
		l, err := s.kube.CoordinationV1().Leases(leaseNS).Get(ctx, "sluice-"+s.gate, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || err == nil && l.Spec.HolderIdentity == nil {
			return ""
		} else if err != nil {
			t.Fatal(err)
		}
		return *l.Spec.HolderIdentity
	}
	// Every change of the holder goes into the events, in order.
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		last := ""
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(200 * time.Millisecond):
			}
			l, err := s.kube.CoordinationV1().Leases(leaseNS).Get(ctx, "sluice-"+s.gate, metav1.GetOptions{})
			if err != nil || l.Spec.HolderIdentity == nil {
				continue
			}
			if h := *l.Spec.HolderIdentity; h != last {
				ev.add("lease", h)
				last = h
			}
		}
	}()
	stopWatching := sync.OnceFunc(func() { close(stopWatch); <-watched })
	defer stopWatching()

	a := startDaemon(t, s, "a", s.config, leaseNS, ev)
	waitFor(t, time.Minute, "a to hold the gate's Lease", func() bool { return holder() == a.identity })
	bd := startDaemon(t, s, "b", cfgB, leaseNS, ev)
	waitFor(t, time.Minute, "b to start", func() bool { return ev.index("b-log", "leader election per gate", 0) >= 0 })

	a3 := s.push("Berlin", "bump A to v3", pair(version("a", "v3"))...)
	b4 := s.push("London", "bump B to v4", pair(version("b", "v4"))...)
	a4 := s.push("Berlin", "bump A to v4", pair(version("a", "v4"))...)

	// Kill a while b4 is under test: its line is out and a namespace exists.
	waitFor(t, 2*time.Minute, "a to test b4", func() bool { return ev.index("a", b4[:7], 0) >= 0 })
	waitFor(t, time.Minute, "a test namespace", func() bool { return len(s.sluiceNamespaces()) > 0 })
	a.signal(syscall.SIGKILL)
	killed := len(ev.snapshot())
	ev.add("test", "killed a")

	waitFor(t, 2*time.Minute, "b to finish the queue", func() bool {
		tip := s.tip("main")
		if tip == a4 || s.tip("staging") != tip {
			return false
		}
		_, ok := s.note(tip)
		return ok
	})
	if h := holder(); h != bd.identity {
		t.Errorf("Lease holder at the end = %q, want b (%s)", h, bd.identity)
	}
	stopWatching()
	// A replica that stops gives its gates up at once (ReleaseOnCancel).
	bd.signal(syscall.SIGTERM)
	if h := holder(); h != "" {
		t.Errorf("Lease holder after b stopped = %q, want it released", h)
	}

	// One drainer at a time: b printed nothing and did not lead before a
	// died; a held the Lease until then, b after.
	all := ev.snapshot()
	var aLines, bLines int
	for i, e := range all {
		switch {
		case e.from == "a":
			aLines++
		case e.from == "b":
			bLines++
			if i < killed {
				t.Errorf("b printed progress while a held the gate: %q", e.text)
			}
		case e.from == "b-log" && strings.Contains(e.text, "leading gate") && i < killed:
			t.Errorf("b led the gate while a held it: %q", e.text)
		case e.from == "lease" && i < killed && e.text != a.identity:
			t.Errorf("Lease held by %q before a was killed, want a (%s)", e.text, a.identity)
		case e.from == "lease" && i > killed && e.text != bd.identity:
			t.Errorf("Lease held by %q after a was killed, want b (%s)", e.text, bd.identity)
		}
	}
	if aLines == 0 || bLines == 0 {
		t.Errorf("progress lines: a %d, b %d; want both to have drained", aLines, bLines)
	}
	if ev.index("b-log", "leading gate", killed) < 0 {
		t.Errorf("b never logged that it leads the gate")
	}

	// The final state of an uninterrupted run.
	s.mustNote(a3, "passed")
	s.mustNote(a4, "passed")
	failed := s.mustNote(b4, "failed")
	var reverts []string
	for _, h := range strings.Fields(s.git("rev-list", "main")) {
		if gitrepo.ParseTrailers(s.git("log", "-1", "--format=%B", h)).Get(gitrepo.TrailerRejected) == b4 {
			reverts = append(reverts, h)
		}
	}
	if len(reverts) != 1 {
		t.Fatalf("b4 reverted %d times, want once: %v", len(reverts), reverts)
	}
	if got := s.tip("main"); got != reverts[0] {
		t.Errorf("main = %s, want the revert %s", got[:7], reverts[0][:7])
	}
	if failed.RevertCommit.String() != reverts[0] {
		t.Errorf("b4's note names revert %s, want %s", failed.RevertCommit, reverts[0][:7])
	}
	s.mustNote(reverts[0], "passed")
	if got := s.tip("staging"); got != reverts[0] {
		t.Errorf("staging = %s, want %s", got[:7], reverts[0][:7])
	}
	if t.Failed() {
		for _, e := range all {
			t.Logf("%-6s %s", e.from, e.text)
		}
	}
}
