package reconcile

import (
	"errors"
	"fmt"
	"strings"
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

// Step names, used in faults, progress lines and note durations.
const (
	StepCandidate = "candidate"
	StepRender    = "render"
	StepApply     = "apply"
	StepHealth    = "health"
	StepTests     = "tests"
	StepCommands  = "commands"
	StepTotal     = "total"
)

// Fault is an error that is the commit's fault: the candidate does not
// render, the API server rejects it, it is not healthy in time or a test
// fails. Anything else that goes wrong is the infrastructure's.
type Fault struct {
	Step string
	Msg  string
}

func (f *Fault) Error() string { return fmt.Sprintf("%s: %s", f.Step, f.Msg) }

func faultf(step, format string, args ...any) error {
	return &Fault{Step: step, Msg: fmt.Sprintf(format, args...)}
}

// IsFault reports whether err is the commit's fault.
func IsFault(err error) bool {
	var f *Fault
	return errors.As(err, &f)
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
