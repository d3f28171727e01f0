package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/sluice-gitops/sluice/reconcile"
	"github.com/sluice-gitops/sluice/testenv"
)

// progress prints one line per step of the queue, with its duration.
type progress struct {
	mu     sync.Mutex
	w      io.Writer
	colour bool
	// The gate and commit of the last line printed. Gates run at the same
	// time, so when the lines of another candidate come in between, the
	// header is printed again.
	lastGate   string
	lastCommit plumbing.Hash
}

func newProgress(w io.Writer, colour bool) *progress {
	return &progress{w: w, colour: colour}
}

const (
	green = "\x1b[32m"
	red   = "\x1b[31m"
	bold  = "\x1b[1m"
	dim   = "\x1b[2m"
	reset = "\x1b[0m"
)

func (p *progress) paint(code, s string) string {
	if !p.colour {
		return s
	}
	return code + s + reset
}

func (p *progress) event(e reconcile.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastGate != e.Gate || p.lastCommit != e.Commit.Hash {
		p.lastGate, p.lastCommit = e.Gate, e.Commit.Hash
		fmt.Fprintf(p.w, "%s %s %s %s %s\n", time.Now().Format("15:04:05"), p.paint(bold, "["+e.Gate+"]"),
			p.paint(bold, e.Commit.Hash.String()[:7]), quote(e.Commit.Subject), p.paint(dim, "by "+e.Commit.Author.Name))
	}
	step, detail := e.Step, e.Detail
	switch e.Step {
	case "verdict":
		step = string(e.Verdict)
		switch e.Verdict {
		case reconcile.Passed:
			step = p.paint(green, step)
		default:
			step = p.paint(red, step)
		}
	case "revert", "stopped":
		step = p.paint(red, step)
	case "fast-forward":
		step = p.paint(green, step)
	}
	took := ""
	if e.Took > 0 {
		took = fmtDuration(e.Took)
	}
	if e.Step == "verdict" && e.Verdict != reconcile.Passed || e.Step == testenv.StepReused {
		// The reason is what the team needs: print it whole, not clipped.
		fmt.Fprintf(p.w, "           %-*s %-44s %8s\n", 12+len(step)-visible(step), step, "", took)
		for _, l := range strings.Split(strings.TrimSpace(e.Detail), "\n") {
			fmt.Fprintf(p.w, "             %s\n", p.paint(red, l))
		}
		return
	}
	fmt.Fprintf(p.w, "           %-*s %-44s %8s\n", 12+len(step)-visible(step), step, clip(detail, 44), took)
}

func quote(s string) string { return fmt.Sprintf("%q", clip(s, 50)) }

func clip(s string, n int) string {
	r := []rune(s)
	for i, c := range r {
		if c == '\n' {
			r = r[:i]
			break
		}
	}
	if len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return string(r)
}

// visible is the length of s without colour codes.
func visible(s string) int {
	n, esc := 0, false
	for _, c := range s {
		switch {
		case c == '\x1b':
			esc = true
		case esc && c == 'm':
			esc = false
		case !esc:
			n++
		}
	}
	return n
}

func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	default:
		return d.Round(time.Second).String()
	}
}
