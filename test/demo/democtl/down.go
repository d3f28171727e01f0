package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-gitops/sluice/test/cluster"
)

// down stops everything the demo in dir started and removes dir: first the
// background processes recorded in dir/run/*.pid (sluice before the servers
// it talks to), then the cluster, then the directory. It then checks that no
// process names dir any more; it reports such processes rather than killing
// them, as they are not the demo's (say, an editor open on a file of a clone).
func down(dir string) error {
	if err := required(map[string]string{"dir": dir}); err != nil {
		return err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range []string{"sluice", "tail", "git-server"} {
		if err := stopPidFile(filepath.Join(dir, "run", name+".pid"), dir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := cluster.StopDetached(filepath.Join(dir, "cluster")); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("%s is still there", dir))
	}
	if left := processesNaming(dir); len(left) > 0 {
		errs = append(errs, fmt.Errorf("processes still name %s:\n  %s", dir, strings.Join(left, "\n  ")))
	}
	return errors.Join(errs...)
}

// stopPidFile stops the process in pidFile, if it still runs and still names
// dir (its pid may have been reused): SIGTERM, then SIGKILL after a grace
// period.
func stopPidFile(pidFile, dir string) error {
	pid, err := readPid(pidFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !alive(pid) || !names(pid, dir) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for deadline := time.Now().Add(10 * time.Second); alive(pid); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if time.Now().After(deadline.Add(5 * time.Second)) {
			return fmt.Errorf("process %d (%s) does not end", pid, pidFile)
		}
	}
	return nil
}

// processesNaming lists, as "pid: command line", the live processes other
// than this one whose command line names dir or a path in it.
func processesNaming(dir string) []string {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var found []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || !names(pid, dir) || !alive(pid) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		found = append(found, fmt.Sprintf("%d: %s", pid, strings.TrimSpace(string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))))
	}
	sort.Strings(found)
	return found
}

// names tells whether a process's command line names dir or a path in it.
func names(pid int, dir string) bool {
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	for arg := range bytes.SplitSeq(cmdline, []byte{0}) {
		for _, word := range bytes.FieldsFunc(arg, func(r rune) bool { return r == '=' || r == ',' }) {
			if s := string(word); s == dir || strings.HasPrefix(s, dir+"/") {
				return true
			}
		}
	}
	return false
}
