// Package testenv tests a candidate's rendered objects on a Kubernetes
// cluster: it makes an ephemeral namespace, validates cluster-scoped objects
// with a server-side dry-run, applies the namespaced ones server-side in
// stages (workloads last), waits for them to be healthy (kstatus), runs the
// test Jobs and Pods and the host-side test commands, and removes the
// namespace again.
//
// Like fluxcd/pkg/ssa it logs nothing and decides nothing about the queue:
// [Cluster.Test] returns the duration of each step and an error whose type
// says whose fault it is. A [*Fault] is the commit's (its objects are
// refused, unhealthy, or fail their tests); an [*UnrecognisedError] is an
// error answer of a cluster that is up, which only a control run can
// attribute; any other error is the infrastructure's.
//
// It never creates anything outside the test namespace, and never deletes
// a namespace that does not carry Sluice's labels for the gate.
package testenv
