package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Stop deletes the cluster: kwokctl stops its components, any process still
// naming the work directory is killed, and the work directory is removed.
// Calling it again returns the first call's result. It does nothing to an
// external cluster.
func (c *Cluster) Stop() error {
	if c == nil || c.external {
		return nil
	}
	c.stopOnce.Do(func() { c.stopErr = c.stop() })
	return c.stopErr
}

func (c *Cluster) stop() error {
	var errs []error
	// kwokctl created the cluster's directory, so there is a cluster to delete.
	if _, err := os.Stat(c.kwokDir); err == nil && c.env != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		// kwokctl v0.8.0 refuses an empty --kubeconfig ("empty path") on delete.
		if err := c.kwokctl(ctx, "delete", "cluster", "--kubeconfig="+filepath.Join(c.kwokDir, "kubeconfig.yaml")); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	// kwokctl kills only what its pid files name; a component whose pid file
	// was lost, or a kwokctl still running, is found by its command line.
	if err := killProcessesOf(c.Workdir, 10*time.Second); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(c.Workdir); err != nil {
		errs = append(errs, err)
	}
	if err := c.stopWatchdog(len(errs) == 0); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop test cluster %s: %w", c.Name, err)
	}
	return nil
}
