package testenv

import (
	"context"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// RunTests runs a gate's tests against a namespace that is already running
// (a preview's): the test Jobs and Pods (already in spec.Namespace), then
// the host commands, with none of Test's setup or cleanup. A *Fault is a
// failed test; any other error is the infrastructure's.
func (k *Cluster) RunTests(ctx context.Context, spec TestSpec, tests []*unstructured.Unstructured) error {
	if len(tests) > 0 {
		if err := k.runTests(ctx, tests, spec.TestsTimeout); err != nil {
			return err
		}
	}
	if len(spec.Commands) > 0 {
		return k.runCommands(ctx, spec)
	}
	return nil
}
