// Package reconcile drains a gate's promotion queue: it tests each queued
// commit in an ephemeral namespace and then fast-forwards the gate's target
// branch to it or pushes a revert commit that rejects it.
//
// It keeps the commit's fault (verdict failed, which may revert the commit)
// apart from the infrastructure's (verdict error, which is retried and never
// reverts anything). It never deletes a namespace it did not label as the
// gate's own, and never force-pushes.
package reconcile
