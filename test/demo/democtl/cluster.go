package main

import (
	"context"
	"fmt"
	"time"

	"github.com/sluice-gitops/sluice/test/cluster"
)

// clusterStartTimeout bounds the start of the control plane, which takes
// well under a minute on an idle machine.
const clusterStartTimeout = 4 * time.Minute

// clusterUp starts a detached cluster in dir and prints its kubeconfig's path.
func clusterUp(ctx context.Context, dir, name string, nodes int) error {
	if err := required(map[string]string{"dir": dir}); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, clusterStartTimeout)
	defer cancel()
	c, err := cluster.StartDetached(ctx, cluster.Options{Name: name, Nodes: nodes}, dir)
	if err != nil {
		return err
	}
	fmt.Println(c.Kubeconfig)
	return nil
}
