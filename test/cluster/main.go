package cluster

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

var (
	shared     *Cluster // the package's cluster, set by Main
	skipReason string   // why there is none, when tests are to skip
)

// Main runs a test package's tests against one cluster and returns the exit
// code; call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(cluster.Main(m)) }
//
// With SLUICE_TEST_KUBECONFIG set it uses that existing cluster and neither
// starts nor stops one. Otherwise it starts a cluster, runs the tests and
// stops the cluster, also when the tests panic, on SIGINT or SIGTERM, and
// when `go test -timeout` ends the test binary (then the cluster's watchdog
// removes it). When the tool binaries are missing it fails, saying so,
// except outside CI (CI unset) with SLUICE_SKIP_CLUSTER=1, where the tests
// run without a cluster and Require skips them.
func Main(m *testing.M) int {
	if !flag.Parsed() {
		flag.Parse()
	}
	if path := os.Getenv("SLUICE_TEST_KUBECONFIG"); path != "" {
		c, err := connect(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "test cluster from SLUICE_TEST_KUBECONFIG: %v\n", err)
			return 1
		}
		shared = c
		return m.Run()
	}

	tools, err := ToolsDir("")
	if err == nil {
		err = checkTools(tools)
	}
	if err != nil {
		if os.Getenv("CI") == "" && os.Getenv("SLUICE_SKIP_CLUSTER") == "1" {
			skipReason = err.Error() + " (SLUICE_SKIP_CLUSTER=1: skipping)"
			fmt.Fprintln(os.Stderr, skipReason)
			return m.Run()
		}
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	opts := DefaultOptions()
	opts.ToolsDir = tools
	c, err := Start(ctx, opts)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "start test cluster: %v\n", err)
		return 1
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "test cluster %s started in %s (%s)\n", c.Name, time.Since(begin).Round(time.Millisecond), c.Workdir)
	}
	shared = c

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig, ok := <-signals
		if !ok {
			return
		}
		fmt.Fprintf(os.Stderr, "%v: stopping test cluster %s\n", sig, c.Name)
		if err := c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		code := 1
		if s, ok := sig.(syscall.Signal); ok {
			code = 128 + int(s)
		}
		os.Exit(code)
	}()
	defer func() {
		signal.Stop(signals)
		close(signals)
		begin := time.Now()
		if err := c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		} else if testing.Verbose() {
			fmt.Fprintf(os.Stderr, "test cluster %s stopped in %s\n", c.Name, time.Since(begin).Round(time.Millisecond))
		}
	}()
	return m.Run()
}

// Shared returns the cluster Main started or connected to, or nil when there
// is none (see Main); Require is the form tests use.
func Shared() *Cluster { return shared }

// Require returns the package's cluster. When Main runs the tests without a
// cluster it skips the test, and it fails the test when Main is not in use.
func Require(t testing.TB) *Cluster {
	t.Helper()
	if shared != nil {
		return shared
	}
	if skipReason != "" {
		t.Skip(skipReason)
	}
	t.Fatal("no test cluster: call cluster.Main from TestMain")
	return nil
}

// connect uses an existing cluster: nothing is started or stopped, and
// StopComponent and StartComponent return ErrExternal.
func connect(kubeconfig string) (*Cluster, error) {
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	return &Cluster{Name: "external", Kubeconfig: kubeconfig, Config: config, external: true}, nil
}
