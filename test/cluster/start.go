package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

// Start creates and starts a cluster and returns once its nodes are Ready and
// the default ServiceAccount exists, so Pods can be created. On error nothing
// of the cluster is left behind. The caller must Stop the cluster; should the
// process end first, a watchdog process removes the cluster all the same.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	opts, tools, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	sweepStale()

	workdir, err := os.MkdirTemp("", workdirPrefix)
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		Name:    opts.Name,
		Workdir: workdir,
		tools:   tools,
		kwokDir: filepath.Join(workdir, "kwok", "clusters", opts.Name),
		config:  filepath.Join(workdir, "kwokctl.yaml"),
	}
	// From here on the watchdog guarantees cleanup if this process dies.
	if err := c.startWatchdog(); err != nil {
		_ = os.RemoveAll(workdir)
		return nil, err
	}
	if err := c.create(ctx, opts); err != nil {
		if stopErr := c.Stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", stopErr))
		}
		return nil, err
	}
	return c, nil
}

func (c *Cluster) create(ctx context.Context, opts Options) error {
	home := filepath.Join(c.Workdir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	c.env = kwokctlEnv(filepath.Join(c.Workdir, "kwok"), home, c.tools)

	config, err := c.kwokctlConfig()
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.config, config, 0o600); err != nil {
		return err
	}
	// kwokctl waits up to two minutes for an API server that does not come
	// up before it gives up; --timeout bounds the whole creation instead.
	timeout := "2m"
	if deadline, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(deadline), time.Second).Round(time.Second).String()
	}
	if err := c.kwokctl(ctx, "create", "cluster", "--runtime=binary", "--kubeconfig=", "--timeout="+timeout); err != nil {
		return err
	}
	// The parameter is a jq assignment on kwokctl's node template.
	if err := c.kwokctl(ctx, "scale", "node", "--replicas="+strconv.Itoa(opts.Nodes),
		"--param", ".allocatable.pods="+strconv.Itoa(opts.PodsPerNode)); err != nil {
		return err
	}

	c.Kubeconfig = filepath.Join(c.kwokDir, "kubeconfig.yaml")
	c.Config, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig of test cluster: %w", err)
	}
	c.Config.QPS, c.Config.Burst = 50, 100
	return c.waitReady(ctx, opts.Nodes)
}

// kwokctlConfig returns the configuration handed to kwokctl: every binary
// and port given, so that it neither downloads nor guesses anything, and the
// stages.
func (c *Cluster) kwokctlConfig() ([]byte, error) {
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	bin := func(name string) string { return filepath.Join(c.tools, name) }
	// Tools kwokctl has no use for here point into the tools directory too,
	// where they do not exist: a use fails instead of downloading.
	options := map[string]any{
		"runtime":                     "binary",
		"bindAddress":                 "127.0.0.1",
		"cacheDir":                    filepath.Join(c.Workdir, "cache"),
		"quietPull":                   true,
		"kubeApiserverPort":           ports[0],
		"etcdPort":                    ports[1],
		"etcdPeerPort":                ports[2],
		"kwokControllerPort":          ports[3],
		"kubeControllerManagerPort":   ports[4],
		"kubeSchedulerPort":           ports[5],
		"etcdBinary":                  bin("etcd"),
		"kubeApiserverBinary":         bin("kube-apiserver"),
		"kubeControllerManagerBinary": bin("kube-controller-manager"),
		"kubeSchedulerBinary":         bin("kube-scheduler"),
		"kubectlBinary":               bin("kubectl"),
		"kwokControllerBinary":        bin("kwok"),
		"kubeBinaryPrefix":            c.tools,
		"kwokBinaryPrefix":            c.tools,
		"etcdBinaryPrefix":            c.tools,
		"etcdctlBinary":               bin("etcdctl"),
		"etcdutlBinary":               bin("etcdutl"),
		"kectlBinary":                 bin("kectl"),
	}
	// Without leader election the controller manager and the scheduler
	// survive an API server outage (StopComponent) instead of exiting when
	// they cannot renew their lease; kwokctl would not restart them.
	// A controller's default client rate (20 requests/s) makes a hundred
	// services' pods take half a minute to exist: the cluster, not the
	// commit under test, would then dominate every measurement.
	controllerArgs := []map[string]any{
		{"key": "leader-elect", "value": "false"},
		{"key": "kube-api-qps", "value": "300"},
		{"key": "kube-api-burst", "value": "600"},
	}
	conf, err := yaml.Marshal(map[string]any{
		"apiVersion": "config.kwok.x-k8s.io/v1alpha1",
		"kind":       "KwokctlConfiguration",
		"options":    options,
		"componentsPatches": []map[string]any{
			// The API server's default Service range, a /24, is full after
			// 254 Services: a few test namespaces of a hundred services.
			{"name": KubeApiserver, "extraArgs": []map[string]any{{"key": "service-cluster-ip-range", "value": "10.96.0.0/16"}}},
			// A test cluster lives for one test package: etcd need not
			// fsync each write to survive a power cut (a killed process
			// loses nothing the page cache holds). With fsync, etcd's disk
			// latency, not Sluice, set the pace of every apply.
			{"name": Etcd, "extraArgs": []map[string]any{{"key": "unsafe-no-fsync", "value": "true"}}},
			{"name": KubeControllerManager, "extraArgs": controllerArgs},
			{"name": KubeScheduler, "extraArgs": controllerArgs},
		},
	})
	if err != nil {
		return nil, err
	}
	stages, err := stagesYAML()
	if err != nil {
		return nil, err
	}
	return append(conf, stages...), nil
}

// freePorts asks the kernel for n distinct free ports on 127.0.0.1. They
// are released before kwokctl binds them, but the kernel hands ports out
// from a wide range, so two clusters starting together do not pick the same
// ones (kwokctl's own choice counts down from 32767 in every process).
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// kwokctlEnv is this process's environment without anything that steers
// kwokctl or kubectl elsewhere, pointed at the cluster's private directories.
func kwokctlEnv(kwokWorkdir, home, tools string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "KWOK_"), name == "KUBECONFIG", name == "HOME", name == "PATH":
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"KWOK_WORKDIR="+kwokWorkdir,
		"HOME="+home,
		// kwokctl looks kubectl up in PATH before it would download one.
		"PATH="+tools+string(os.PathListSeparator)+os.Getenv("PATH"),
	)
}

// kwokctl runs a kwokctl command on this cluster, in a process group of its
// own, logging to kwokctl.log in the work directory.
func (c *Cluster) kwokctl(ctx context.Context, args ...string) error {
	logPath := filepath.Join(c.Workdir, "kwokctl.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	start, _ := logFile.Seek(0, 2)

	args = append([]string{"--name=" + c.Name, "--config=" + c.config}, args...)
	fmt.Fprintf(logFile, "$ kwokctl %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, filepath.Join(c.tools, "kwokctl"), args...)
	cmd.Dir = c.Workdir
	cmd.Env = c.env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kwokctl %s: %w\n%s", strings.Join(args[2:], " "), err, logTail(logPath, start))
	}
	return nil
}

// logTail returns the last lines written to a log file since offset.
func logTail(path string, offset int64) string {
	data, err := os.ReadFile(path)
	if err != nil || int64(len(data)) < offset {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(data[offset:])), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// waitReady waits until the cluster has n Ready nodes and the default
// ServiceAccount, without which the API server refuses Pods.
func (c *Cluster) waitReady(ctx context.Context, n int) error {
	client, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	var last error
	for {
		last = ready(ctx, client, n)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for test cluster: %w (last: %v)", ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func ready(ctx context.Context, client kubernetes.Interface, n int) error {
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var readyNodes []string
	for _, node := range nodes.Items {
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				readyNodes = append(readyNodes, node.Name)
			}
		}
	}
	if len(readyNodes) < n {
		return fmt.Errorf("%d of %d nodes ready", len(readyNodes), n)
	}
	return defaultServiceAccount(ctx, client, metav1.NamespaceDefault)
}

func defaultServiceAccount(ctx context.Context, client kubernetes.Interface, namespace string) error {
	_, err := client.CoreV1().ServiceAccounts(namespace).Get(ctx, "default", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("no default ServiceAccount in namespace %s yet", namespace)
	}
	return err
}

// resolve fills in the defaults and finds the tools, all present.
func (opts Options) resolve() (Options, string, error) {
	def := DefaultOptions()
	if opts.Name == "" {
		opts.Name = def.Name
	}
	if opts.Nodes <= 0 {
		opts.Nodes = def.Nodes
	}
	if opts.PodsPerNode <= 0 {
		opts.PodsPerNode = def.PodsPerNode
	}
	tools, err := ToolsDir(opts.ToolsDir)
	if err != nil {
		return opts, "", err
	}
	if err := checkTools(tools); err != nil {
		return opts, "", err
	}
	return opts, tools, nil
}
