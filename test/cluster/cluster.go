package cluster

import (
	"errors"
	"os"
	"os/exec"
	"sync"

	"k8s.io/client-go/rest"
)

var (
	// ErrToolsMissing is wrapped by the error of Start when a binary the
	// cluster is made of is not in the tools directory (see ToolsMissingError).
	ErrToolsMissing = errors.New("test cluster binaries missing")
	// ErrExternal is returned by operations that need a cluster this package
	// started, such as StopComponent, on a cluster given by SLUICE_TEST_KUBECONFIG.
	ErrExternal = errors.New("not supported on an external cluster")
)

// Components of a cluster, for StopComponent and StartComponent.
const (
	Etcd                  = "etcd"
	KubeApiserver         = "kube-apiserver"
	KubeControllerManager = "kube-controller-manager"
	KubeScheduler         = "kube-scheduler"
	KwokController        = "kwok-controller"
)

// Options configure Start.
type Options struct {
	// Name of the kwokctl cluster; "sluice" when empty. Every cluster has a
	// private work directory, so clusters of the same name do not collide.
	Name string
	// Nodes is the number of kwok nodes; 2 when zero.
	Nodes int
	// PodsPerNode is how many Pods each node takes (its allocatable and
	// capacity "pods"); kwok's default, 110, when zero. Nodes × PodsPerNode
	// bounds the Pods of every namespace together: a bench of 100 services
	// tested 8 candidates at a time needs 800 and more.
	PodsPerNode int
	// ToolsDir holds the binaries (see Tools); see ToolsDir for the default.
	ToolsDir string
}

// DefaultOptions returns the options Main starts a cluster with.
func DefaultOptions() Options {
	return Options{Name: "sluice", Nodes: 2, PodsPerNode: DefaultPodsPerNode}
}

// DefaultPodsPerNode is a node's Pod capacity when Options leave it unset:
// kwok's default, which is also the kubelet's.
const DefaultPodsPerNode = 110

// Cluster is a running test control plane.
type Cluster struct {
	// Name of the kwokctl cluster.
	Name string
	// Kubeconfig is the path of a kubeconfig file for the cluster (admin).
	Kubeconfig string
	// Config is the client configuration of Kubeconfig.
	Config *rest.Config
	// Workdir holds every file of the cluster; Stop removes it. Empty for
	// an external cluster.
	Workdir string

	external bool
	tools    string   // the tools directory
	kwokDir  string   // kwokctl's directory of this cluster, under Workdir
	config   string   // the kwokctl configuration file, stages included
	env      []string // environment of kwokctl and of the components

	watchdog *exec.Cmd // removes everything once lifeline closes
	lifeline *os.File  // write end of the watchdog's stdin; never written

	stopOnce sync.Once
	stopErr  error
}
