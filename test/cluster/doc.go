// Package cluster runs a real Kubernetes control plane for tests: etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler, with kwok
// standing in for kubelets, started by kwokctl's binary runtime from the
// binaries `make tools` builds into bin/.
//
// It never downloads anything, never listens beyond 127.0.0.1 and never
// touches ~/.kwok or ~/.kube: every file of a cluster lives in one private
// temporary directory, and a watchdog process removes that directory and every
// process of the cluster when the test binary exits, however it exits.
//
// A test package starts one cluster in TestMain and gives each test its own
// namespace:
//
//	func TestMain(m *testing.M) { os.Exit(cluster.Main(m)) }
//
//	func TestX(t *testing.T) {
//		c := cluster.Require(t)
//		ns := c.Namespace(t)
//		client := c.Client(t)
//		...
//	}
//
// # Simulated Pods
//
// Pods behave as kwok's defaults make them: a scheduled Pod becomes Running
// and Ready at once, a Pod of a Job then succeeds with exit code 0, and a
// deleted Pod goes away. A test chooses a fault by what it writes in its
// manifests:
//
//   - never-ready: annotation sluice.dev/simulate: never-ready, or a container
//     image whose reference ends in "-never-ready" (e.g. "app:v2-never-ready").
//     The Pod runs but never turns Ready, so a Deployment never becomes
//     Available and a Job never completes.
//   - fail: annotation sluice.dev/simulate: fail. Every container exits 1 with
//     reason Error and a message. A Pod with restartPolicy Never or OnFailure
//     (a Job's) ends in phase Failed; a Pod with restartPolicy Always (a
//     Deployment's) stays Running in CrashLoopBackOff and never turns Ready.
//   - contract check: when the first container has the env var
//     SIMULATE_REQUIRE (a Go regular expression, unanchored: use ^ and $) the
//     Pod fails as above unless the value of SIMULATE_ACTUAL (empty when unset)
//     matches it; an invalid expression fails too. When it matches, the Pod
//     behaves normally. The termination message names both values.
//
// The annotation wins over the image tag, which wins over the contract check;
// any other value of the annotation means no fault. The rules are kwok Stages
// in stages/; every default stage excludes faulted Pods, so the outcome never
// depends on kwok's weighted random choice between matching stages.
package cluster
