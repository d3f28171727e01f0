package testenv

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/fluxcd/pkg/ssa"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// runTests applies the objects labelled sluice.dev/test, after the
// environment is healthy, and waits for each Job or Pod to finish.
func (k *Cluster) runTests(ctx context.Context, tests []*unstructured.Unstructured, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := k.manager.ApplyAll(ctx, tests, ssa.ApplyOptions{WaitInterval: k.poll, WaitTimeout: timeout}); err != nil {
		return k.classify(ctx, StepTests, err)
	}
	waiting := map[string]*unstructured.Unstructured{}
	for _, t := range tests {
		if isJob(t) || isPod(t) {
			waiting[t.GetKind()+"/"+t.GetName()] = t
		}
	}
	for len(waiting) > 0 {
		for _, name := range sortedKeys(waiting) {
			done, err := k.finished(ctx, waiting[name])
			if err != nil {
				return err
			}
			if done {
				delete(waiting, name)
			}
		}
		if len(waiting) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			if uerr := k.reachable(context.WithoutCancel(ctx)); uerr != nil {
				return uerr
			}
			msg := fmt.Sprintf("not finished within %s: %s", timeout, strings.Join(sortedKeys(waiting), ", "))
			if uerr := k.unplaced(context.WithoutCancel(ctx), tests[0].GetNamespace(), StepTests, msg); uerr != nil {
				return uerr
			}
			return faultf(StepTests, "%s", msg)
		case <-time.After(k.poll):
		}
	}
	return nil
}

func isJob(o *unstructured.Unstructured) bool {
	return o.GetKind() == "Job" && o.GroupVersionKind().Group == "batch"
}

func isPod(o *unstructured.Unstructured) bool {
	return o.GetKind() == "Pod" && o.GroupVersionKind().Group == ""
}

// finished reports whether a test Job or Pod is done; a failed one is a Fault.
func (k *Cluster) finished(ctx context.Context, t *unstructured.Unstructured) (bool, error) {
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(t.GroupVersionKind())
	if err := k.client.Get(ctx, client.ObjectKeyFromObject(t), live); err != nil {
		if ctx.Err() != nil {
			return false, nil // the caller reports the timeout
		}
		if apierrors.IsNotFound(err) {
			return false, faultf(StepTests, "%s/%s disappeared before it finished", t.GetKind(), t.GetName())
		}
		if uerr := k.reachable(ctx); uerr != nil {
			return false, uerr
		}
		return false, err
	}
	if isPod(live) {
		switch phase, _, _ := unstructured.NestedString(live.Object, "status", "phase"); phase {
		case "Succeeded":
			return true, nil
		case "Failed":
			return false, faultf(StepTests, "test Pod/%s failed: %s", t.GetName(), podFailure(live))
		}
		return false, nil
	}
	conds, _, _ := unstructured.NestedSlice(live.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["status"] != "True" {
			continue
		}
		switch m["type"] {
		case "Complete":
			return true, nil
		case "Failed":
			msg := fmt.Sprintf("test Job/%s failed: %v", t.GetName(), m["reason"])
			if s, _ := m["message"].(string); s != "" {
				msg += ": " + s
			}
			if detail := k.jobPodFailure(ctx, live); detail != "" {
				msg += "\n" + detail
			}
			return false, &Fault{Step: StepTests, Msg: msg}
		}
	}
	return false, nil
}

// jobPodFailure describes the failed pods of a Job: which container
// exited how, with its termination message.
func (k *Cluster) jobPodFailure(ctx context.Context, job *unstructured.Unstructured) string {
	pods := &unstructured.UnstructuredList{}
	pods.SetGroupVersionKind(schema.GroupVersionKind{Version: "v1", Kind: "PodList"})
	if err := k.client.List(ctx, pods, client.InNamespace(job.GetNamespace()), client.MatchingLabels{"batch.kubernetes.io/job-name": job.GetName()}); err != nil {
		return ""
	}
	var lines []string
	for i := range pods.Items {
		p := &pods.Items[i]
		if phase, _, _ := unstructured.NestedString(p.Object, "status", "phase"); phase == "Failed" {
			lines = append(lines, fmt.Sprintf("pod %s: %s", p.GetName(), podFailure(p)))
		}
	}
	return strings.Join(lines, "\n")
}

func podFailure(p *unstructured.Unstructured) string {
	var parts []string
	statuses, _, _ := unstructured.NestedSlice(p.Object, "status", "containerStatuses")
	for _, s := range statuses {
		m, _ := s.(map[string]any)
		term, ok, _ := unstructured.NestedMap(m, "state", "terminated")
		if !ok {
			continue
		}
		part := fmt.Sprintf("container %v exited with code %v", m["name"], term["exitCode"])
		if r, _ := term["reason"].(string); r != "" {
			part += " (" + r + ")"
		}
		if msg, _ := term["message"].(string); msg != "" {
			part += ": " + strings.TrimSpace(msg)
		}
		parts = append(parts, part)
	}
	if len(parts) == 0 {
		reason, _, _ := unstructured.NestedString(p.Object, "status", "reason")
		msg, _, _ := unstructured.NestedString(p.Object, "status", "message")
		return strings.TrimSpace(reason + " " + msg)
	}
	return strings.Join(parts, "; ")
}
