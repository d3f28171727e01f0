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

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/test/cluster"
	"github.com/sluice-gitops/sluice/test/fixture"
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
	nodes       int
	podsPerNode int
	runFlags    []string
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
	flag.IntVar(&o.nodes, "nodes", 10, "kwok nodes of the test cluster")
	flag.IntVar(&o.podsPerNode, "pods-per-node", cluster.DefaultPodsPerNode, "Pod capacity of each kwok node")
	var runFlags string
	flag.StringVar(&runFlags, "run-flags", "", "more flags for `sluice run`, space-separated, e.g. \"--kube-api-qps 200\"")
	flag.Parse()
	o.runFlags = strings.Fields(runFlags)
	o.strategies = strings.Split(strategies, ",")
	if o.broken > o.commits {
		fmt.Fprintln(os.Stderr, "bench: -broken must not exceed -commits")
		os.Exit(2)
	}
	// Each service runs one Pod per candidate, and a window of candidates
	// runs at once; a cancelled candidate's Pods may still be going away.
	if need := o.services * max(o.parallelism, 1); o.nodes*o.podsPerNode < need {
		fmt.Fprintf(os.Stderr, "bench: -nodes %d × -pods-per-node %d = %d Pods, fewer than -services %d × -parallelism %d = %d: raise -nodes\n",
			o.nodes, o.podsPerNode, o.nodes*o.podsPerNode, o.services, o.parallelism, need)
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
	tree     string        // final target tip's tree
	culprits []string      // subjects of the reverted commits, sorted
	reverts  int
	verdicts map[string]string // by commit subject, from the notes
	steps    steps
}

// steps is where Sluice's time went, summed over the passed candidates it
// tested itself (the verdict notes' durations: a commit judged by another
// commit's candidate or by an equal rendering counts no time, and a failed
// one has no duration for the step it failed in), and the Git steps of the
// progress log.
type steps struct {
	candidates int
	render     time.Duration
	apply      time.Duration // namespace creation and server-side apply
	health     time.Duration
	jobs       time.Duration // the test objects (Jobs) of the desired state
	commands   time.Duration // the test command: the test itself
	rest       time.Duration // total minus the steps: tree build, namespace delete
	total      time.Duration
	git        time.Duration // fast-forwards and reverts (progress log)
	// Every candidate of its own, failed and reused ones included.
	all      int
	allTotal time.Duration
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

	fmt.Printf("» starting the test control plane (%s): %d nodes of %d Pods\n", o.tools, o.nodes, o.podsPerNode)
	c, err := cluster.StartDetached(ctx, cluster.Options{Name: "sluice-bench", Nodes: o.nodes, PodsPerNode: o.podsPerNode, ToolsDir: o.tools}, filepath.Join(work, "cluster"))
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
		// Each run's figures as soon as it ends: a long bench stopped
		// half-way still leaves what it measured.
		fmt.Printf("  %s: makespan %s, %d tests (%s in tests), %d reverts, peak RSS %d MiB, target %q, culprits %q\n",
			s, r.makespan.Round(time.Second), r.tests, r.testTime.Round(time.Second), r.reverts, r.peakRSS/1024, r.target, r.culprits)
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
	y := fixture.Service(name, tag)
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
	// "serial+reuse" is serial with gates[].reuseEnvironment.
	base, reuse := strings.CutSuffix(strategy, "+reuse")
	name := "bench-" + strings.ReplaceAll(strategy, "+", "-")
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
	if base != "serial" {
		strat = fmt.Sprintf("    strategy: %s\n    parallelism:\n      max: %d\n", base, b.o.parallelism)
	}
	if reuse {
		strat += "    reuseEnvironment: true\n"
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
	args := append([]string{"run", "--once", "--config", cfgFile, "--kubeconfig", b.kubeconfig, "--progress", "always"}, b.o.runFlags...)
	cmd := exec.CommandContext(ctx, b.o.sluice, args...)
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
	if err := b.git(ctx, clone, "fetch", "-q", "origin", "+refs/notes/*:refs/notes/*"); err != nil {
		return r, err
	}
	if err := b.git(ctx, clone, "fetch", "-q", "origin"); err != nil {
		return r, err
	}
	if r.target, err = b.gitOut(ctx, clone, "log", "-1", "--format=%s", "origin/staging"); err != nil {
		return r, err
	}
	if r.tree, err = b.gitOut(ctx, clone, "rev-parse", "origin/staging^{tree}"); err != nil {
		return r, err
	}
	if r.verdicts, r.steps, err = b.readNotes(ctx, clone); err != nil {
		return r, err
	}
	if r.steps.git, err = progressGitTime(logFile.Name()); err != nil {
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

// readNotes reads the verdict of every commit of the source since the
// initial one, by subject, and sums the step durations of the candidates
// Sluice tested itself.
func (b *bench) readNotes(ctx context.Context, clone string) (map[string]string, steps, error) {
	var st steps
	revs, err := b.gitOut(ctx, clone, "rev-list", "--first-parent", "origin/main")
	if err != nil {
		return nil, st, err
	}
	verdicts := map[string]string{}
	for _, rev := range strings.Fields(revs) {
		subject, err := b.gitOut(ctx, clone, "log", "-1", "--format=%s", rev)
		if err != nil {
			return nil, st, err
		}
		if subject == "Initial desired state" {
			continue
		}
		text, err := b.gitOut(ctx, clone, "notes", "--ref=sluice", "show", rev)
		if err != nil {
			verdicts[subject] = "none"
			continue
		}
		n, err := gitrepo.DecodeNote([]byte(text))
		if err != nil {
			return nil, st, fmt.Errorf("note of %s: %w", rev, err)
		}
		rec, ok := n.Get("staging")
		if !ok {
			verdicts[subject] = "none"
			continue
		}
		verdicts[subject] = rec.Verdict
		d := rec.Durations
		if !rec.Candidate.IsZero() && d["total"] > 0 {
			st.all++
			st.allTotal += d["total"]
		}
		// A failed candidate stops at its failing step, which then lacks
		// a duration: only passed candidates split into every step.
		if rec.Verdict != gitrepo.VerdictPassed || rec.Skipped || rec.Candidate.IsZero() || d["total"] == 0 {
			continue // judged without a test of its own, or failed
		}
		st.candidates++
		st.render += d["render"]
		st.apply += d["apply"]
		st.health += d["health"]
		st.jobs += d["tests"]
		st.commands += d["commands"]
		st.total += d["total"]
		st.rest += d["total"] - d["render"] - d["apply"] - d["health"] - d["tests"] - d["commands"]
	}
	return verdicts, st, nil
}

// progressGitTime sums the durations of the fast-forward and revert lines
// of sluice's progress output (see cmd/sluice/progress.go): the Git steps
// that are no candidate's. Pushing the notes is not timed anywhere.
func progressGitTime(path string) (time.Duration, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || (f[0] != "fast-forward" && f[0] != "revert") {
			continue
		}
		if d, err := time.ParseDuration(f[len(f)-1]); err == nil {
			total += d
		}
	}
	return total, nil
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
	fmt.Fprintf(w, "\n%d services (%d objects), %d bumps of which %d broken, a %s test, parallelism %d\n",
		o.services, 2*o.services, o.commits, o.broken, o.testTime, o.parallelism)
	if len(o.runFlags) > 0 {
		fmt.Fprintf(w, "sluice run %s\n", strings.Join(o.runFlags, " "))
	}
	var serial time.Duration
	for _, r := range rs {
		if r.name == "sluice serial" {
			serial = r.makespan
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tmakespan\t÷ serial\ttests run\ttime in tests\t(makespan−tests)/test\tSluice/candidate\tpeak RSS\treverts\tfinal target\t")
	for _, r := range rs {
		ratio := "-"
		if serial > 0 && strings.HasPrefix(r.name, "sluice") {
			ratio = fmt.Sprintf("%.2f×", float64(r.makespan)/float64(serial))
		}
		// Tests that overlap make makespan minus their sum meaningless.
		per := "-"
		if r.tests > 0 && (oneAtATime(r.name) || r.name == "kubectl loop") {
			per = ((r.makespan - r.testTime) / time.Duration(r.tests)).Round(10 * time.Millisecond).String()
		}
		own := "-"
		if n := r.steps.candidates; n > 0 {
			own = ((r.steps.total - r.steps.commands) / time.Duration(n)).Round(10 * time.Millisecond).String()
		}
		rss := "-"
		if r.peakRSS > 0 {
			rss = fmt.Sprintf("%d MiB", r.peakRSS/1024)
		}
		target := r.target
		if r.name == "kubectl loop" {
			target = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\t%s\t\n", r.name, r.makespan.Round(100*time.Millisecond), ratio,
			r.tests, r.testTime.Round(100*time.Millisecond), per, own, rss, r.reverts, target)
	}
	tw.Flush()
	fmt.Fprintln(w, "Sluice/candidate: a passed candidate's time in Sluice minus its test command, from the verdict notes.")
	// The overhead beside the loop's, measured in the same run.
	overhead := func(r result) time.Duration { return (r.makespan - r.testTime) / time.Duration(r.tests) }
	for _, l := range rs {
		if l.name != "kubectl loop" || l.tests == 0 {
			continue
		}
		for _, r := range rs {
			if oneAtATime(r.name) && r.tests > 0 {
				fmt.Fprintf(w, "%s: (makespan−tests)/test %s = %.2f× the kubectl loop's %s\n", r.name,
					overhead(r).Round(10*time.Millisecond), float64(overhead(r))/float64(overhead(l)), overhead(l).Round(10*time.Millisecond))
			}
		}
	}

	fmt.Fprintln(w, "\nSluice's time per passed candidate it tested, by step (verdict notes; git from the progress log):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tcandidates\trender\tapply\thealth\ttest Jobs\ttest command\ttree+cleanup\tcandidate total\tgit (ff, revert)\toutside candidates\t")
	for _, r := range rs {
		st := r.steps
		if st.candidates == 0 {
			continue
		}
		n := time.Duration(st.candidates)
		each := func(d time.Duration) string { return (d / n).Round(time.Millisecond).String() }
		// Only when candidates run one at a time does the makespan split
		// into candidates and the rest (start, fetch, queue, notes), which
		// is spread over every candidate, failed and reused ones too.
		outside := "-"
		if oneAtATime(r.name) && st.all > 0 {
			outside = ((r.makespan - st.allTotal - st.git) / time.Duration(st.all)).Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.name, st.candidates, each(st.render), each(st.apply),
			each(st.health), each(st.jobs), each(st.commands), each(st.rest), each(st.total), each(st.git), outside)
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
			fmt.Fprintf(w, "\nculprits (%s): %s\nfinal target (%s): %q, tree %.12s\n", r.name, strings.Join(r.culprits, ", "), r.name, r.target, r.tree)
			continue
		}
		var diffs []string
		if strings.Join(r.culprits, "\n") != strings.Join(first.culprits, "\n") {
			diffs = append(diffs, fmt.Sprintf("culprits %q, %s has %q", r.culprits, first.name, first.culprits))
		}
		if r.target != first.target || r.tree != first.tree {
			diffs = append(diffs, fmt.Sprintf("final target %q (tree %.12s), %s has %q (tree %.12s)", r.target, r.tree, first.name, first.target, first.tree))
		}
		for _, subject := range sortedKeys(first.verdicts, r.verdicts) {
			if a, b := first.verdicts[subject], r.verdicts[subject]; a != b {
				diffs = append(diffs, fmt.Sprintf("%q %s, %s says %s", subject, orNone(b), first.name, orNone(a)))
			}
		}
		if len(diffs) == 0 {
			fmt.Fprintf(w, "%s: same culprits, final target and verdicts as %s\n", r.name, first.name)
			continue
		}
		fmt.Fprintf(w, "MISMATCH: %s differs from %s:\n", r.name, first.name)
		for _, d := range diffs {
			fmt.Fprintf(w, "  %s\n", d)
		}
	}
}

// oneAtATime reports whether a run tests one candidate at a time, so that
// its makespan splits into tests and the rest.
func oneAtATime(name string) bool {
	return name == "sluice serial" || name == "sluice serial+reuse"
}

func orNone(v string) string {
	if v == "" {
		return "none"
	}
	return v
}

func sortedKeys(ms ...map[string]string) []string {
	seen := map[string]bool{}
	var keys []string
	for _, m := range ms {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	return keys
}
