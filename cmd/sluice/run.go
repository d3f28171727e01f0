package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/internal/config"
	"github.com/sluice-gitops/sluice/internal/verdictkey"
	"github.com/sluice-gitops/sluice/reconcile"
	"github.com/sluice-gitops/sluice/reconcile/plan"
	"github.com/sluice-gitops/sluice/testenv"
)

// runFlags are the flags of `sluice run`, as the flag set parsed them.
type runFlags struct {
	cfgFile, kubeconfig, progress, logLevel, logFormat, listen *string
	publicURL, envRole                                         *string
	once                                                       *bool
	qps                                                        *float64
	burst, starts                                              *int
	leader                                                     *leaderFlags // leader.go
}

func defineRunFlags(fs *pflag.FlagSet) *runFlags {
	return &runFlags{
		cfgFile:    fs.String("config", "sluice.yaml", "configuration `file`"),
		once:       fs.Bool("once", false, "drain every gate's queue and exit; non-zero on an error"),
		kubeconfig: fs.String("kubeconfig", "", "kubeconfig `file` (default: $KUBECONFIG, ~/.kube/config, in-cluster)"),
		progress:   fs.String("progress", "auto", "one line per step on stdout: auto (when stdout is a terminal), always or never"),
		logLevel:   fs.String("log-level", "info", "debug, info, warn or error"),
		logFormat:  fs.String("log-format", "text", "text or json"),
		qps:        fs.Float64("kube-api-qps", testenv.DefaultQPS, "requests per second to the Kubernetes API server"),
		burst:      fs.Int("kube-api-burst", testenv.DefaultBurst, "burst of requests to the Kubernetes API server, above --kube-api-qps"),
		listen:     fs.String("listen", "", "serve /healthz, /readyz, /metrics (Prometheus), /status and POST /trigger (a push webhook) on this `address`, e.g. :8080"),
		publicURL:  fs.String("public-url", "", "the `address` people reach --listen at; commit statuses on the forge link to its /status/<gate>/<commit>"),
		envRole:    fs.String("environment-role", "", "bind Sluice to this `ClusterRole` in each test namespace and apply through that binding only (deploy/: sluice-environment)"),
		starts:     fs.Int("environment-starts", 0, "test environments that may be starting (namespace, apply, health) at once on one cluster, the earliest in the queue first; 0: no limit. On a small cluster, 1 or 2 lets a speculative window's tests run while the next environments start"),
		leader:     defineLeaderFlags(fs),
	}
}

func runCmd(ctx context.Context, f *runFlags, stdout, stderr io.Writer) error {
	cfgFile, once, kubeconfig, progress, listen := f.cfgFile, f.once, f.kubeconfig, f.progress, f.listen
	logLevel, logFormat, qps, burst := f.logLevel, f.logFormat, f.qps, f.burst
	log, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return usageError{err}
	}
	if *qps <= 0 || *burst <= 0 {
		return usageError{errors.New("--kube-api-qps and --kube-api-burst must be greater than zero")}
	}
	if *f.starts < 0 {
		return usageError{errors.New("--environment-starts must not be negative")}
	}
	if err := f.leader.check(*once); err != nil {
		return usageError{err}
	}
	cfg, err := config.Load(*cfgFile)
	if err != nil {
		return err
	}
	restCfg, kubeconfigPath, err := loadKubeconfig(*kubeconfig)
	if err != nil {
		return err
	}
	restCfg.QPS, restCfg.Burst = float32(*qps), *burst
	cluster, err := testenv.NewCluster(restCfg, kubeconfigPath)
	if err != nil {
		return err
	}
	if err := cluster.UseEnvironmentRole(ctx, *f.envRole); err != nil {
		return err
	}
	cluster.SetStartLimit(*f.starts)
	key, err := loadVerdictKey(ctx, cfg, func() (*rest.Config, error) { return restCfg, nil }, true)
	if err != nil {
		return err
	}
	repo, err := openRepo(ctx, cfg, true)
	if err != nil {
		return err
	}
	defer repo.Close()
	gs := gates(cfg)
	if err := useGateClusters(ctx, cfg, gs, cluster, kubeconfigPath, restCfg.QPS, restCfg.Burst, *f.envRole, *f.starts); err != nil {
		return err
	}
	runner := &reconcile.Runner{
		Repo:   repo,
		Source: cfg.Repository.SourceBranch,
		Gates:  gs,
		Env:    cluster,
		Log:    log,
		Key:    key,
		Render: cfg.Limits.RenderOptions(),
	}
	show, err := wantProgress(*progress, stdout)
	if err != nil {
		return usageError{err}
	}
	var onEvent []func(reconcile.Event)
	var mon *monitor // leader.go: readiness of the gates this replica leads
	if show {
		onEvent = append(onEvent, newProgress(stdout, isTerminal(stdout)).event)
	}
	if *listen != "" {
		names := make([]string, len(runner.Gates))
		for i, g := range runner.Gates {
			names[i] = g.Name
		}
		m := newMonitor(names)
		m.status.useRepository(repo, key, cfg.Repository.SourceBranch, runner.Gates)
		mon = m
		serveCtx, stopServing := context.WithCancel(ctx)
		wait, err := serveMonitor(serveCtx, *listen, m, log)
		if err != nil {
			stopServing()
			return err
		}
		defer func() {
			stopServing()
			wait()
		}()
		onEvent = append(onEvent, m.event)
		runner.OnDrain = m.drained
		if !*once {
			m.wake = runner.WakeGates
		}
	}
	if len(onEvent) > 0 {
		runner.OnEvent = func(e reconcile.Event) {
			for _, f := range onEvent {
				f(e)
			}
		}
	}
	stopNotify, err := startNotifier(cfg, runner, log)
	if err != nil {
		return err
	}
	defer stopNotify()
	stopForge, poster, err := startForge(ctx, cfg, runner, *f.publicURL, log)
	if err != nil {
		return err
	}
	defer stopForge()
	log.Info("sluice starting", "version", version, "config", cfg.File(), "gates", len(cfg.Gates), "once", *once)
	// preview_sync.go: expiry and branch previews; with --leader-elect each
	// gate's are kept by its leader (previewsOf, beside the gate).
	stopPreviews, previewsOf := startPreviews(ctx, cfg, repo, restCfg, log, *once, *f.leader.enabled)
	defer stopPreviews()

	// promote.go: after each drain, what a gate passed goes to the next gate.
	promoted, err := startPromoter(ctx, cfg, repo, key, runner, log, *once)
	if err != nil {
		return err
	}
	// pulls.go: a preview verdict on each open pull request, once the queue drained.
	pulls := newPullChecks(runner, poster, log)
	if *once {
		err := runOncePromoting(ctx, runner, promoted)
		pulls.once(ctx, runner.Gates)
		return err
	}
	pulls.hook(ctx, runner)
	if runner.Lead, err = f.leader.lead(restCfg, log, mon, previewsOf); err != nil {
		return err
	}
	return runner.Run(ctx, cfg.PollInterval.Duration)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
	log := slog.New(h)
	// The Kubernetes libraries log through logr and klog: send both to slog.
	routeKubernetesLogs(h)
	return log, nil
}

// loadKubeconfig follows the usual rules: --kubeconfig, then $KUBECONFIG,
// then ~/.kube/config, then the in-cluster service account.
func loadKubeconfig(explicit string) (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = explicit
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := cc.ClientConfig()
	if err == nil {
		path := explicit
		if path == "" {
			if files := rules.GetLoadingPrecedence(); len(files) > 0 {
				for _, f := range files {
					if _, serr := os.Stat(f); serr == nil {
						path = f
						break
					}
				}
			}
		}
		return cfg, path, nil
	}
	if explicit == "" && clientcmd.IsEmptyConfig(err) {
		if ic, ierr := rest.InClusterConfig(); ierr == nil {
			return ic, "", nil
		}
	}
	return nil, "", fmt.Errorf("kubeconfig: %w", err)
}

// loadVerdictKey returns the key Sluice signs and verifies verdicts with:
// the configured file or variable, or else the Secret in the cluster
// restCfg returns, which `run` creates (create) and `status` only reads.
func loadVerdictKey(ctx context.Context, cfg *config.Config, restCfg func() (*rest.Config, error), create bool) (*gitrepo.VerdictKey, error) {
	r := cfg.Repository
	src := verdictkey.Source{File: r.VerdictKeyFile, Env: r.VerdictKeyEnv, Namespace: r.VerdictKeyNamespace}
	key, err := verdictkey.Load(ctx, src, func() (kubernetes.Interface, error) {
		rc, err := restCfg()
		if err != nil {
			return nil, err
		}
		return kubernetes.NewForConfig(rc)
	}, create)
	if err != nil {
		return nil, fmt.Errorf("%s: repository: %w", cfg.File(), err)
	}
	return key, nil
}

// openRepo opens the configured repository. Only `run` uses the cache
// directory, and holds its lock while it runs (a second `run` on the same
// cache fails at once); `status` reads into memory, so it works next to a
// running daemon.
func openRepo(ctx context.Context, cfg *config.Config, useCache bool) (*gitrepo.Repository, error) {
	creds, err := cfg.Repository.Credentials.Resolve()
	if err != nil {
		return nil, fmt.Errorf("%s: repository.credentials: %w", cfg.File(), err)
	}
	dir := cfg.Repository.CacheDir
	if !useCache {
		dir = ""
	}
	if dir != "" && !filepath.IsAbs(dir) {
		dir = filepath.Join(filepath.Dir(cfg.File()), dir)
	}
	return gitrepo.Open(ctx, gitrepo.Options{
		URL:         cfg.Repository.URL,
		Credentials: creds,
		Dir:         dir,
		Author:      gitrepo.Signature{Name: cfg.Repository.Author.Name, Email: cfg.Repository.Author.Email},
		Revert:      cfg.Limits.RevertOptions(),
	})
}

func gates(cfg *config.Config) []reconcile.Gate {
	out := make([]reconcile.Gate, 0, len(cfg.Gates))
	for _, g := range cfg.Gates {
		cmds := make([]testenv.Command, 0, len(g.Tests.Commands))
		for _, c := range g.Tests.Commands {
			args := append([]string(nil), c.Command...)
			if !filepath.IsAbs(args[0]) && strings.ContainsRune(args[0], '/') {
				args[0] = filepath.Join(filepath.Dir(cfg.File()), args[0])
			}
			cmds = append(cmds, testenv.Command{Name: c.Name, Args: args, Timeout: c.Timeout.Duration})
		}
		out = append(out, reconcile.Gate{
			Name:           g.Name,
			Path:           g.Path,
			Target:         g.TargetBranch,
			ClusterScoped:  g.ClusterScoped,
			ApplyTimeout:   g.Timeouts.Apply.Duration,
			HealthTimeout:  g.Timeouts.Health.Duration,
			TestsTimeout:   g.Timeouts.Tests.Duration,
			KeepNamespace:  g.OnFailure.KeepNamespace.Duration,
			Commands:       cmds,
			Revert:         g.RevertOnFailure(),
			InitialBackoff: g.Retry.InitialBackoff.Duration,
			MaxBackoff:     g.Retry.MaxBackoff.Duration,
			OnceAttempts:   g.Retry.OnceAttempts,

			ApplyConcurrency: g.ApplyConcurrency,
			Strategy:         plan.Strategy(g.Strategy),
			ParallelismMin:   g.Parallelism.Min,
			ParallelismMax:   g.Parallelism.Max,
			ReuseEnvironment: g.ReuseEnvironment,
		})
	}
	return out
}

func wantProgress(mode string, w io.Writer) (bool, error) {
	switch mode {
	case "auto":
		return isTerminal(w), nil
	case "always":
		return true, nil
	case "never":
		return false, nil
	}
	return false, errors.New(`--progress: want auto, always or never`)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
