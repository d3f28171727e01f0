//go:build unix

package gitrepo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockFile is the file in a cache directory that one process holds an
// exclusive flock on while it uses the cache. The kernel releases it when
// the process ends, however it ends, so a crash never leaves it stale.
const lockFile = "sluice.lock"

// ErrCacheInUse: another process holds the cache directory.
var ErrCacheInUse = errors.New("repository cache is in use by another process")

// lockDir takes the lock of the cache directory dir, or fails with
// ErrCacheInUse naming the process that holds it.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock repository cache: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := "another process"
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				holder = fmt.Sprintf("process %d", pid)
			}
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s holds %s; give each Sluice its own repository.cacheDir", ErrCacheInUse, holder, path)
		}
		return nil, fmt.Errorf("lock repository cache %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
