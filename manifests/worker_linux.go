package manifests

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// workerSysProcAttr makes the worker die with the daemon.
func workerSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// limitAddressSpace caps the worker's address space at what it has mapped
// now (the Go runtime reserves much it never uses) plus twice its budget,
// so that one allocation far beyond the budget fails at once. The race
// detector maps terabytes of shadow memory, so race builds go without.
func limitAddressSpace(max int64) {
	if raceEnabled {
		return
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(l, "VmSize:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return
		}
		limit := uint64(kb<<10 + 2*max + 512<<20)
		_ = syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: limit, Max: limit})
		return
	}
}
