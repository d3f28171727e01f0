package reconcile

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sluice-gitops/sluice/testenv"
)

// Verdict is the outcome of testing one queued commit.
type Verdict string

const (
	// Passed: the candidate rendered, applied, became healthy and its tests passed.
	Passed Verdict = "passed"
	// Failed: the commit's fault; it is reverted.
	Failed Verdict = "failed"
	// Error: the infrastructure's fault; the commit is tested again later.
	Error Verdict = "error"
)

// Step names of the queue's own steps, used in faults, progress lines
// and note durations; the test's steps are testenv's (testenv.StepApply …).
const (
	StepCandidate = "candidate"
	StepRender    = "render"
	StepTotal     = "total"
)

// faultf is the commit's fault at one of the queue's own steps.
func faultf(step, format string, args ...any) error {
	return &testenv.Fault{Step: step, Msg: fmt.Sprintf(format, args...)}
}

// Sentinel errors.
var (
	// ErrGateStopped wraps a condition that needs a person: the target
	// branch was moved by someone else, or a revert conflicts.
	ErrGateStopped = errors.New("gate stopped")
)

// StoppedError says why a gate stopped; it needs a person to act.
type StoppedError struct {
	Gate   string
	Reason string
}

func (e *StoppedError) Error() string { return fmt.Sprintf("gate %s stopped: %s", e.Gate, e.Reason) }

// Unwrap makes errors.Is(err, ErrGateStopped) true.
func (e *StoppedError) Unwrap() error { return ErrGateStopped }

// firstLines keeps the first n lines of s, noting how many were cut.
func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= n {
		return strings.Join(lines, "\n")
	}
	return strings.Join(lines[:n], "\n") + fmt.Sprintf("\n… (%d more lines)", len(lines)-n)
}
