//go:build !linux

package manifests

import "syscall"

func workerSysProcAttr() *syscall.SysProcAttr { return nil }

// limitAddressSpace is Linux-only; elsewhere the watchdog alone bounds memory.
func limitAddressSpace(int64) {}
