// Command bench measures Sluice's throughput at the scale of a platform
// team: a desired state of many services (a Deployment and a Service each),
// a queue of version bumps of which some are broken, and a test of fixed
// duration (a host command that sleeps and fails on a broken image), on the
// test control plane and a Git server on loopback. It prints the makespan of
// each gating strategy side by side, Sluice's own overhead per candidate
// (makespan minus the time spent in the test itself) and its peak RSS, and
// the same figures for a hand-written kubectl loop over the same queue.
//
// `make bench` runs it; flags choose the scale. Everything it starts (the
// cluster, the Git server) is stopped and removed when it ends, and it only
// ever talks to loopback addresses.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sluice-gitops/sluice/test/cluster"
	"github.com/sluice-gitops/sluice/test/gitserver"
)

type options struct {
	services    int
	commits     int
	broken      int
	testTime    time.Duration
	strategies  []string
	parallelism int
	loop        bool
	sluice      string
	tools       string
	keep        bool
}

func main() {
	var o options
	var strategies string
	flag.IntVar(&o.services, "services", 100, "services in the desired state (a Deployment and a Service each)")
	flag.IntVar(&o.commits, "commits", 50, "queued version bumps")
	flag.IntVar(&o.broken, "broken", 2, "how many of the bumps are broken")
	flag.DurationVar(&o.testTime, "test", 10*time.Second, "duration of the test of one candidate")
	flag.StringVar(&strategies, "strategies", "serial,speculative,batch", "gating strategies to measure, comma-separated")
	flag.IntVar(&o.parallelism, "parallelism", 8, "gates[].parallelism.max for speculative and batch")
	flag.BoolVar(&o.loop, "kubectl-loop", true, "also measure a hand-written kubectl loop over the same queue")
	flag.StringVar(&o.sluice, "sluice", "bin/sluice", "the sluice binary")
	flag.StringVar(&o.tools, "tools", "bin", "directory of kubectl and the control plane's binaries")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (the cluster is stopped anyway)")
	flag.Parse()
	o.strategies = strings.Split(strategies, ",")
	if o.broken > o.commits {
		fmt.Fprintln(os.Stderr, "bench: -broken must not exceed -commits")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// result is one strategy's run over the queue.
type result struct {
	name     string
	makespan time.Duration
	tests    int           // test commands run
	testTime time.Duration // time spent inside them
	peakRSS  int64         // KiB
	target   string        // final target tip's subject
	culprits []string      // subjects of the reverted commits, sorted
	reverts  int
}

func run(ctx context.Context, o options) error {
	var err error
	if o.sluice, err = filepath.Abs(o.sluice); err != nil {
		return err
	}
	if o.tools, err = filepath.Abs(o.tools); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(work)
	} else {
		fmt.Printf("work directory: %s\n", work)
	}

	fmt.Printf("» starting the test control plane (%s)\n", o.tools)
	c, err := cluster.StartDetached(ctx, cluster.Options{Name: "sluice-bench", Nodes: 2, ToolsDir: o.tools}, filepath.Join(work, "cluster"))
	if err != nil {
		return err
	}
	defer c.Stop()

	root, home := filepath.Join(work, "git"), filepath.Join(work, "git-home")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	h, err := gitserver.NewHandler(root, gitserver.HandlerOptions{Home: home, Stderr: os.Stderr})
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	defer srv.Close()
	base := "http://" + l.Addr().String()

	b := &bench{o: o, work: work, root: root, home: home, base: base, kubeconfig: c.Kubeconfig}
	var results []result
	for _, s := range o.strategies {
		fmt.Printf("» %s: %d services, %d bumps (%d broken), a %s test\n", s, o.services, o.commits, o.broken, o.testTime)
		r, err := b.sluiceRun(ctx, s)
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
		results = append(results, r)
	}
	if o.loop {
		fmt.Printf("» kubectl loop over the same queue\n")
		r, err := b.kubectlLoop(ctx)
		if err != nil {
			return fmt.Errorf("kubectl loop: %w", err)
		}
		results = append(results, r)
	}
	report(os.Stdout, o, results)
	return nil
}

type bench struct {
	o          options
	work       string
	root, home string
	base       string
	kubeconfig string
}

// brokenAt spreads the broken bumps evenly over the queue.
func brokenAt(commits, broken int) map[int]bool {
	m := map[int]bool{}
	for k := 0; k < broken; k++ {
		m[(2*k+1)*commits/(2*broken)] = true
	}
	return m
}

// seed creates repository name with the desired state and the queue, and
// returns a clone of it.
func (b *bench) seed(ctx context.Context, name string) (string, error) {
	dir, err := gitserver.CreateBareRepo(ctx, b.root, b.home, name)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "hooks", "pre-receive"), []byte(gitserver.ProtectBranches("staging")), 0o755); err != nil {
		return "", err
	}
	clone := filepath.Join(b.work, "clones", name)
	if err := b.git(ctx, "", "clone", "-q", b.base+"/"+name+".git", clone); err != nil {
		return "", err
	}
	env := filepath.Join(clone, "environments", "staging")
	var resources []string
	for i := 0; i < b.o.services; i++ {
		svc := fmt.Sprintf("svc-%03d", i)
		resources = append(resources, svc+".yaml")
		if err := writeService(env, svc, "v1"); err != nil {
			return "", err
		}
	}
	kust := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
	for _, r := range resources {
		kust += "  - " + r + "\n"
	}
	if err := os.WriteFile(filepath.Join(env, "kustomization.yaml"), []byte(kust), 0o644); err != nil {
		return "", err
	}
	if err := b.commit(ctx, clone, "Initial desired state"); err != nil {
		return "", err
	}
	if err := b.git(ctx, clone, "push", "-q", "origin", "main", "main:staging"); err != nil {
		return "", err
	}
	broken := brokenAt(b.o.commits, b.o.broken)
	for i := 0; i < b.o.commits; i++ {
		svc := fmt.Sprintf("svc-%03d", i%b.o.services)
		tag := fmt.Sprintf("v%d", i+2)
		if broken[i] {
			tag = fmt.Sprintf("broken-%d", i)
		}
		if err := writeService(env, svc, tag); err != nil {
			return "", err
		}
		if err := b.commit(ctx, clone, fmt.Sprintf("bump %s to %s", svc, tag)); err != nil {
			return "", err
		}
	}
	return clone, b.git(ctx, clone, "push", "-q", "origin", "main")
}

func writeService(dir, name, tag string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	y := fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
spec:
  replicas: 1
  selector:
    matchLabels: {app: %[1]s}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
      containers:
        - name: app
          image: registry.example.com/%[1]s:%[2]s
          ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: %[1]s
spec:
  selector: {app: %[1]s}
  ports: [{port: 80, targetPort: 8080}]
`, name, tag)
	return os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(y), 0o644)
}

func (b *bench) commit(ctx context.Context, dir, msg string) error {
	if err := b.git(ctx, dir, "add", "-A"); err != nil {
		return err
	}
	return b.git(ctx, dir, "commit", "-q", "-m", msg)
}

func (b *bench) git(ctx context.Context, dir string, args ...string) error {
	_, err := b.gitOut(ctx, dir, args...)
	return err
}

func (b *bench) gitOut(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+b.home, "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Bench", "GIT_AUTHOR_EMAIL=bench@example.com",
		"GIT_COMMITTER_NAME=Bench", "GIT_COMMITTER_EMAIL=bench@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// testScript is the test of one candidate: it takes the fixed time, fails
// when the test namespace runs a broken image, and logs its duration.
func (b *bench) testScript(log string) string {
	return fmt.Sprintf(`start=$(date +%%s.%%N)
sleep %g
images=$(%s/kubectl get deployments -n "$SLUICE_NAMESPACE" -o jsonpath='{..image}')
end=$(date +%%s.%%N)
echo "$start $end" >> %q
case "$images" in *:broken-*) echo "a broken image runs in $SLUICE_NAMESPACE"; exit 1;; esac
`, b.o.testTime.Seconds(), b.o.tools, log)
}

func (b *bench) sluiceRun(ctx context.Context, strategy string) (result, error) {
	name := "bench-" + strategy
	clone, err := b.seed(ctx, name)
	if err != nil {
		return result{}, err
	}
	dir := filepath.Join(b.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return result{}, err
	}
	log := filepath.Join(dir, "tests.log")
	script := filepath.Join(dir, "test.sh")
	if err := os.WriteFile(script, []byte(b.testScript(log)), 0o755); err != nil {
		return result{}, err
	}
	strat := ""
	if strategy != "serial" {
		strat = fmt.Sprintf("    strategy: %s\n    parallelism:\n      max: %d\n", strategy, b.o.parallelism)
	}
	cfg := fmt.Sprintf(`repository:
  url: %s/%s.git
  sourceBranch: main
  author: {name: Sluice, email: sluice@bench.example}
gates:
  - name: staging
    path: environments/staging
    targetBranch: staging
%s    timeouts: {apply: 5m, health: 5m, tests: 5m}
    tests:
      commands:
        - name: bench
          command: [sh, %q]
          timeout: 10m
    onFailure: {revert: true, keepNamespace: 1s}
`, b.base, name, strat, script)
	cfgFile := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		return result{}, err
	}
	cmd := exec.CommandContext(ctx, b.o.sluice, "run", "--once", "--config", cfgFile, "--kubeconfig", b.kubeconfig)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+b.kubeconfig, "PATH="+b.o.tools+":"+os.Getenv("PATH"))
	logFile, err := os.Create(filepath.Join(dir, "sluice.log"))
	if err != nil {
		return result{}, err
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	start := time.Now()
	err = cmd.Run()
	r := result{name: "sluice " + strategy, makespan: time.Since(start)}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru != nil {
		r.peakRSS = ru.Maxrss
	}
	if err != nil {
		return r, fmt.Errorf("sluice run --once: %w (log: %s)", err, logFile.Name())
	}
	r.tests, r.testTime, err = readTestLog(log)
	if err != nil {
		return r, err
	}
	if err := b.git(ctx, clone, "fetch", "-q", "origin"); err != nil {
		return r, err
	}
	if r.target, err = b.gitOut(ctx, clone, "log", "-1", "--format=%s", "origin/staging"); err != nil {
		return r, err
	}
	rejected, err := b.gitOut(ctx, clone, "log", "--format=%s", "--grep=^This reverts commit", "origin/main")
	if err != nil {
		return r, err
	}
	for _, s := range strings.Split(rejected, "\n") {
		if s = strings.TrimSpace(s); s != "" {
			r.culprits = append(r.culprits, strings.TrimSuffix(strings.TrimPrefix(s, `Revert "`), `"`))
		}
	}
	sort.Strings(r.culprits)
	r.reverts = len(r.culprits)
	return r, nil
}

func readTestLog(path string) (n int, total time.Duration, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var a, b float64
		if _, err := fmt.Sscanf(line, "%f %f", &a, &b); err == nil {
			n++
			total += time.Duration((b - a) * float64(time.Second))
		}
	}
	return n, total, nil
}

// kubectlLoop is what a person writes by hand: for each queued commit,
// kustomize build, a namespace, server-side apply, wait, the same test,
// and a push of the target branch when it passes. It reverts nothing: a
// broken commit stays in every later candidate, so after the first broken
// one the loop only measures the cost per commit.
func (b *bench) kubectlLoop(ctx context.Context) (result, error) {
	name := "bench-kubectl"
	clone, err := b.seed(ctx, name)
	if err != nil {
		return result{}, err
	}
	dir := filepath.Join(b.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return result{}, err
	}
	log := filepath.Join(dir, "tests.log")
	script := filepath.Join(dir, "test.sh")
	if err := os.WriteFile(script, []byte(b.testScript(log)), 0o755); err != nil {
		return result{}, err
	}
	revs, err := b.gitOut(ctx, clone, "rev-list", "--reverse", "--first-parent", "origin/staging..origin/main")
	if err != nil {
		return result{}, err
	}
	kubectl := filepath.Join(b.o.tools, "kubectl")
	k := func(args ...string) error {
		cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", b.kubeconfig}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	start := time.Now()
	for i, rev := range strings.Fields(revs) {
		if err := b.git(ctx, clone, "checkout", "-q", rev); err != nil {
			return result{}, err
		}
		out := filepath.Join(dir, "rendered.yaml")
		cmd := exec.CommandContext(ctx, kubectl, "kustomize", filepath.Join(clone, "environments", "staging"), "-o", out)
		if o, err := cmd.CombinedOutput(); err != nil {
			return result{}, fmt.Errorf("kubectl kustomize: %w\n%s", err, o)
		}
		ns := fmt.Sprintf("bench-loop-%d", i)
		if err := k("create", "namespace", ns); err != nil {
			return result{}, err
		}
		if err := k("apply", "--server-side", "-n", ns, "-f", out); err != nil {
			return result{}, err
		}
		if err := k("wait", "-n", ns, "--for=condition=Available", "deployments", "--all", "--timeout=5m"); err != nil {
			return result{}, err
		}
		test := exec.CommandContext(ctx, "sh", script)
		test.Env = append(os.Environ(), "SLUICE_NAMESPACE="+ns, "KUBECONFIG="+b.kubeconfig)
		passed := test.Run() == nil
		if err := k("delete", "namespace", ns, "--wait=false"); err != nil {
			return result{}, err
		}
		if passed {
			if err := b.git(ctx, clone, "push", "-q", "origin", rev+":refs/heads/staging"); err != nil {
				// A broken commit earlier in the line makes later pushes
				// non-fast-forward only if history diverged; it cannot here.
				return result{}, err
			}
		}
	}
	r := result{name: "kubectl loop", makespan: time.Since(start)}
	r.tests, r.testTime, err = readTestLog(log)
	return r, err
}

func report(w *os.File, o options, rs []result) {
	fmt.Fprintf(w, "\n%d services (%d objects), %d bumps of which %d broken, a %s test\n",
		o.services, 2*o.services, o.commits, o.broken, o.testTime)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tmakespan\ttests run\ttime in tests\toverhead/test\tpeak RSS\treverts\tfinal target\t")
	var serial time.Duration
	for _, r := range rs {
		if r.name == "sluice serial" {
			serial = r.makespan
		}
	}
	for _, r := range rs {
		per := "-"
		if r.tests > 0 {
			per = ((r.makespan - r.testTime) / time.Duration(r.tests)).Round(10 * time.Millisecond).String()
		}
		rss := "-"
		if r.peakRSS > 0 {
			rss = fmt.Sprintf("%d MiB", r.peakRSS/1024)
		}
		ratio := ""
		if serial > 0 && r.name != "sluice serial" && strings.HasPrefix(r.name, "sluice") {
			ratio = fmt.Sprintf(" (%.2f×)", float64(r.makespan)/float64(serial))
		}
		target := r.target
		if r.name == "kubectl loop" {
			target = "-"
		}
		fmt.Fprintf(tw, "%s\t%s%s\t%d\t%s\t%s\t%s\t%d\t%s\t\n", r.name, r.makespan.Round(100*time.Millisecond), ratio,
			r.tests, r.testTime.Round(100*time.Millisecond), per, rss, r.reverts, target)
	}
	tw.Flush()
	var first *result
	for i := range rs {
		r := &rs[i]
		if !strings.HasPrefix(r.name, "sluice") {
			continue
		}
		if first == nil {
			first = r
			fmt.Fprintf(w, "culprits (%s): %s\n", r.name, strings.Join(r.culprits, ", "))
			continue
		}
		same := strings.Join(r.culprits, "\n") == strings.Join(first.culprits, "\n") && r.target == first.target
		fmt.Fprintf(w, "%s: same culprits and final target as %s: %v\n", r.name, first.name, same)
	}
}
