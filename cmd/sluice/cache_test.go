package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gitops/sluice/test/gitserver"
)

// TestSecondRunOnTheSameCacheIsRefused: while a daemon uses a cache
// directory, a second `run` with the same cacheDir exits at once saying who
// holds it, and `status` still works next to the daemon.
func TestSecondRunOnTheSameCacheIsRefused(t *testing.T) {
	f := newRepoFixture(t, gitserver.Options{})
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	writeFile(t, cfg, fmt.Sprintf("repository:\n  url: %s\n  cacheDir: cache\npollInterval: 1h\n", f.srv.RepoURL("desired"))+stagingGate)
	lock := filepath.Join(filepath.Dir(cfg), "cache", "sluice.lock")

	startDaemon(t, "--config", cfg, "--kubeconfig", f.kubeconfig)
	for deadline := time.Now().Add(30 * time.Second); ; {
		if b, err := os.ReadFile(lock); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the daemon never took the cache's lock")
		}
		time.Sleep(20 * time.Millisecond)
	}

	code, _, stderr := sluice(t, "run", "--once", "--config", cfg, "--kubeconfig", f.kubeconfig)
	if code == 0 || !strings.Contains(stderr, "in use by another process") || !strings.Contains(stderr, lock) {
		t.Errorf("a second run on the same cache exited %d, want non-zero saying %s is in use", code, lock)
	}
	if code, _, _ := sluice(t, "status", "--config", cfg); code != 0 {
		t.Errorf("status next to the daemon exited %d", code)
	}
}
