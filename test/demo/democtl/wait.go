package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const defaultWaitTimeout = 3 * time.Minute

// status is the part of `sluice status --output json` the wait looks at.
type status struct {
	Source string `json:"source"`
	Gates  []struct {
		Name   string `json:"name"`
		Target string `json:"targetBranch"`
		Error  string `json:"error"`
		Tip    *struct {
			SHA     string `json:"sha"`
			Verdict string `json:"verdict"`
		} `json:"targetTip"`
		Queue []struct {
			SHA     string `json:"sha"`
			Verdict string `json:"verdict"`
		} `json:"queue"`
	} `json:"gates"`
}

// drained says why the queues are not drained yet, or "" once every gate's
// target holds the source's tip (its queue is empty) and the verdict on
// that tip is recorded: the last thing Sluice writes for a queue.
func (s status) drained() string {
	for _, g := range s.Gates {
		switch {
		case g.Error != "":
			return fmt.Sprintf("gate %s: %s", g.Name, g.Error)
		case len(g.Queue) > 0:
			return fmt.Sprintf("gate %s: %d commit(s) queued on %s", g.Name, len(g.Queue), s.Source)
		case g.Tip == nil || g.Tip.Verdict == "untested":
			return fmt.Sprintf("gate %s: no verdict on the tip of %s yet", g.Name, g.Target)
		}
	}
	return ""
}

// waitDrained polls `sluice status` until the queues are drained, and fails
// early when the sluice whose pid is in pidFile is no longer running.
func waitDrained(ctx context.Context, sluice, config, pidFile string, timeout time.Duration) error {
	if err := required(map[string]string{"sluice": sluice, "config": config, "pid-file": pidFile}); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := "no status yet"
	for {
		if err := running(pidFile); err != nil {
			return err
		}
		st, err := sluiceStatus(ctx, sluice, config)
		if err == nil {
			if last = st.drained(); last == "" {
				return nil
			}
		} else if ctx.Err() == nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("queue not drained within %s: %s", timeout, last)
		case <-time.After(time.Second):
		}
	}
}

func sluiceStatus(ctx context.Context, sluice, config string) (status, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, sluice, "status", "--config", config, "--output", "json")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return status{}, fmt.Errorf("sluice status: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	var st status
	if err := json.Unmarshal(stdout.Bytes(), &st); err != nil {
		return status{}, fmt.Errorf("sluice status: %w", err)
	}
	return st, nil
}

// running fails when the process named by pidFile is gone.
func running(pidFile string) error {
	pid, err := readPid(pidFile)
	if err != nil {
		return err
	}
	if !alive(pid) {
		return fmt.Errorf("sluice (pid %d) is no longer running", pid)
	}
	return nil
}

func readPid(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s: not a process id", path)
	}
	return pid, nil
}

// alive tells whether a process exists and is not a zombie.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z'
}
