package testenv

import (
	"context"
	"fmt"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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
