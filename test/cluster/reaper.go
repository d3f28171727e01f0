package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// workdirPrefix starts the name of every cluster's work directory in the
// system's temporary directory.
const workdirPrefix = "sluice-cluster-"

// reaperScript waits for its standard input, the read end of a pipe whose
// only write end this process holds, to reach end of file: the kernel closes
// it when this process exits in any way (a panic, `go test -timeout`, a
// signal, SIGKILL). It then kills every process whose command line names the
// work directory and removes the directory. Stop, having done that itself,
// writes "stopped" first and the script just exits. The directory is passed
// in the environment so that the script's own command line does not name it.
const reaperScript = `
while read -r line; do
	[ "$line" = stopped ] && exit 0
done
reap() {
	for f in $(grep -lF -e "$SLUICE_CLUSTER_DIR/" /proc/[0-9]*/cmdline 2>/dev/null); do
		pid=${f#/proc/}
		pid=${pid%/cmdline}
		[ "$pid" = "$$" ] || kill -9 "$pid" 2>/dev/null
	done
}
reap
sleep 0.2
reap
rm -rf "$SLUICE_CLUSTER_DIR"
`

// startWatchdog starts the process that removes the cluster when this
// process goes away, in a session of its own so that a terminal's ^C does not
// reach it before it has done its work.
func (c *Cluster) startWatchdog() error {
	r, w, err := os.Pipe() // close-on-exec: no other child inherits w
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", reaperScript, "sluice-cluster-reaper")
	cmd.Stdin = r
	cmd.Env = []string{"PATH=/usr/bin:/bin", "SLUICE_CLUSTER_DIR=" + c.Workdir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start test cluster watchdog: %w", err)
	}
	c.watchdog, c.lifeline = cmd, w
	return writeOwner(c.Workdir)
}

// stopWatchdog ends the watchdog and waits for it. Unless cleanedUp, it
// first kills what is left of the cluster and removes the work directory.
func (c *Cluster) stopWatchdog(cleanedUp bool) error {
	if c.watchdog == nil {
		return nil
	}
	if cleanedUp {
		_, _ = c.lifeline.WriteString("stopped\n")
	}
	c.lifeline.Close()
	done := make(chan error, 1)
	go func() { done <- c.watchdog.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		_ = c.watchdog.Process.Kill()
		return errors.New("test cluster watchdog did not finish in 30s")
	}
}

// processesOf returns the IDs of the live processes whose command line names
// a path in dir, this process excepted.
func processesOf(dir string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	needle := []byte(strings.TrimSuffix(dir, "/") + "/")
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue // gone, or a zombie: its command line is empty
		}
		if bytes.Contains(cmdline, needle) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killProcessesOf kills every process processesOf(dir) finds, until none is
// left or the timeout passes.
func killProcessesOf(dir string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pids := processesOf(dir)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes of %s still running after %s: %v", dir, timeout, pids)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The owner file of a work directory names the process that made it, so
// that a later Start can remove the directories of processes that died
// together with their watchdog (e.g. everything killed at once).
const ownerFile = "owner"

func writeOwner(workdir string) error {
	start, err := startTime(os.Getpid())
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(workdir, ownerFile), fmt.Appendf(nil, "%d %s\n", os.Getpid(), start), 0o600)
}

// sweepStale removes the work directories, and kills the processes, of
// clusters whose owner process is gone. Directories without an owner file
// are being made right now and left alone.
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), workdirPrefix+"*"))
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		fields := strings.Fields(string(data))
		if len(fields) != 2 {
			continue
		}
		pid, err := strconv.Atoi(fields[0])
		if err != nil {
			continue
		}
		if start, err := startTime(pid); err == nil && start == fields[1] {
			continue // the owner lives
		}
		if killProcessesOf(dir, 10*time.Second) == nil {
			_ = os.RemoveAll(dir)
		}
	}
}

// startTime returns a process's start time in clock ticks since boot, which
// tells it apart from a later process with the same ID.
func startTime(pid int) (string, error) {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", err
	}
	// The command name, in parentheses, may hold spaces; fields count from
	// after it: state is field 3, starttime field 22.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return "", fmt.Errorf("parse /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 20 {
		return "", fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return fields[19], nil
}

// alive tells whether a process exists and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z'
}
