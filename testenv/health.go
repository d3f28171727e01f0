package testenv

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// notCurrent lists the objects that are not Current (kstatus), with their
// status and kstatus's message, e.g. "Deployment/z is InProgress: ...".
func (k *Cluster) notCurrent(ctx context.Context, objs []*unstructured.Unstructured) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var out []string
	for _, o := range objs {
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(o.GroupVersionKind())
		name := o.GetKind() + "/" + o.GetName()
		if err := k.client.Get(ctx, client.ObjectKeyFromObject(o), live); err != nil {
			if apierrors.IsNotFound(err) {
				out = append(out, name+" is missing")
				continue
			}
			return nil, fmt.Errorf("health of %s: %w", name, err)
		}
		res, err := status.Compute(live)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		if res.Status != status.CurrentStatus {
			msg := fmt.Sprintf("%s is %s", name, res.Status)
			if res.Message != "" {
				msg += ": " + res.Message
			}
			out = append(out, msg)
		}
	}
	return out, nil
}

// unplaced returns an *UnrecognisedError when pods of namespace cannot be
// scheduled (condition PodScheduled False with reason Unschedulable, what
// the scheduler's FailedScheduling event says): a full cluster is no proof
// that the commit is at fault, so only a control run on the same cluster
// can tell. It returns nil when every pod was placed, and an
// infrastructure error when the pods cannot be listed.
func (k *Cluster) unplaced(ctx context.Context, namespace, step, msg string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	pods := &unstructured.UnstructuredList{}
	pods.SetGroupVersionKind(schema.GroupVersionKind{Version: "v1", Kind: "PodList"})
	if err := k.client.List(ctx, pods, client.InNamespace(namespace)); err != nil {
		return fmt.Errorf("list pods of %s: %w", namespace, err)
	}
	var unplaced []string
	for i := range pods.Items {
		p := &pods.Items[i]
		conds, _, _ := unstructured.NestedSlice(p.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "PodScheduled" && m["status"] == "False" && m["reason"] == "Unschedulable" {
				unplaced = append(unplaced, fmt.Sprintf("Pod/%s: %v", p.GetName(), m["message"]))
			}
		}
	}
	if len(unplaced) == 0 {
		return nil
	}
	sort.Strings(unplaced)
	return &UnrecognisedError{Step: step, Err: fmt.Errorf("%s; pods cannot be scheduled (%s)", msg, firstLines(strings.Join(unplaced, "\n"), 5))}
}
