package config

import (
	"fmt"
	"path/filepath"
	"strings"
)

// validateKubeconfigs resolves each gate's kubeconfig, the cluster its
// candidates are tested on: a path relative to the configuration file's
// directory (or absolute, e.g. a Secret mounted in the pod). Empty is the
// daemon's own cluster (run --kubeconfig). The file is read when `run`
// starts, so a missing one is reported there with the gate's name.
func (c *Config) validateKubeconfigs() error {
	for i := range c.Gates {
		g := &c.Gates[i]
		k := g.Kubeconfig
		if k == "" {
			continue
		}
		if strings.TrimSpace(k) != k || strings.ContainsRune(k, 0) {
			return &Error{File: c.file, Line: g.line, Field: fmt.Sprintf("gates[%d].kubeconfig", i), Msg: fmt.Sprintf("%q is not a file path", k)}
		}
		if !filepath.IsAbs(k) {
			g.Kubeconfig = filepath.Join(filepath.Dir(c.file), k)
		}
	}
	return nil
}
