package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/sluice-gitops/sluice/internal/config"
	"github.com/sluice-gitops/sluice/reconcile"
	"github.com/sluice-gitops/sluice/testenv"
)

// useGateClusters gives each gate with its own kubeconfig (gates[].kubeconfig)
// the cluster it names, one testenv.Cluster per distinct file, made with the
// same --kube-api-qps, --kube-api-burst, --environment-role and
// --environment-starts (a limit per cluster) as the
// daemon's own (own, read from ownPath). Other gates keep the daemon's.
func useGateClusters(ctx context.Context, cfg *config.Config, gs []reconcile.Gate, own *testenv.Cluster, ownPath string, qps float32, burst int, envRole string, starts int) error {
	clusters := map[string]*testenv.Cluster{}
	if ownPath != "" {
		if abs, err := filepath.Abs(ownPath); err == nil {
			clusters[abs] = own
		}
	}
	for i, g := range cfg.Gates {
		if g.Kubeconfig == "" {
			continue
		}
		path, err := filepath.Abs(g.Kubeconfig)
		if err != nil {
			return fmt.Errorf("%s: gates[%d].kubeconfig: %w", cfg.File(), i, err)
		}
		c, ok := clusters[path]
		if !ok {
			rc, _, err := loadKubeconfig(path)
			if err != nil {
				return fmt.Errorf("%s: gates[%d].kubeconfig (gate %s): %w", cfg.File(), i, g.Name, err)
			}
			rc.QPS, rc.Burst = qps, burst
			if c, err = testenv.NewCluster(rc, path); err != nil {
				return fmt.Errorf("%s: gates[%d].kubeconfig (gate %s): %w", cfg.File(), i, g.Name, err)
			}
			if err := c.UseEnvironmentRole(ctx, envRole); err != nil {
				return fmt.Errorf("gate %s: %w", g.Name, err)
			}
			c.SetStartLimit(starts)
			clusters[path] = c
		}
		gs[i].Env = c
	}
	return nil
}
