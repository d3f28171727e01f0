//go:build !unix

package gitrepo

import (
	"errors"
	"os"
)

// ErrCacheInUse: another process holds the cache directory. Without flock
// the cache is not locked on this platform.
var ErrCacheInUse = errors.New("repository cache is in use by another process")

func lockDir(string) (*os.File, error) { return nil, nil }
