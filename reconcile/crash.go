package reconcile

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// EnvCrashAt names a crash point for tests: SLUICE_CRASH_AT=point[:n] kills
// the process with SIGKILL the n-th time (default first) it reaches point.
// The points are the steps of a candidate's life after which an
// interrupted run must still converge: namespace-created, applied,
// verdict (before the note is written), revert-pushed (before the note
// records it) and fast-forwarded; cmd/sluice adds promoted (promotions
// pushed, before any gate tests them) through CrashPoint.
const EnvCrashAt = "SLUICE_CRASH_AT"

var crashCounts = struct {
	sync.Mutex
	n map[string]int
}{n: map[string]int{}}

// CrashPoint is a crash point outside this package, named like the others.
func CrashPoint(name string) { crashPoint(name) }

func crashPoint(name string) {
	spec := os.Getenv(EnvCrashAt)
	if spec == "" {
		return
	}
	point, nth, _ := strings.Cut(spec, ":")
	if point != name {
		return
	}
	want := 1
	if n, err := strconv.Atoi(nth); err == nil && n > 0 {
		want = n
	}
	crashCounts.Lock()
	crashCounts.n[name]++
	hit := crashCounts.n[name] == want
	crashCounts.Unlock()
	if hit {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL is not delivered synchronously; never go on
	}
}
