// Command sluice is the GitOps promotion gate: `sluice run` drains each
// gate's queue, `sluice status` shows it, `sluice render` prints what a gate
// would apply.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sluice-gitops/sluice/manifests"
)

// version is set by the linker (-X main.version=...).
var version = "dev"

func main() {
	manifests.MaybeRunWorker() // a render runs in a copy of this process
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: it returns the exit code, 0 on success,
// 1 when the command failed and 2 when it was called wrongly (an unknown
// command or flag, a bad flag value, a missing argument).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand(stdout, stderr)
	root.SetArgs(longFlags(root, args))
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	name := strings.TrimPrefix(cmd.CommandPath(), "sluice ")
	if cmd == root {
		name = ""
	}
	prefix := strings.TrimSpace("sluice " + name)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "%s: %v\nRun '%s --help' for usage.\n", prefix, err, cmd.CommandPath())
		return 2
	}
	fmt.Fprintf(stderr, "%s: %v\n", prefix, err)
	return 1
}

// usageError is a command called wrongly: exit code 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "sluice",
		Short: "A GitOps promotion gate",
		Long: `Sluice tests each commit that changes an environment's kustomization, in
order, in an ephemeral namespace, then fast-forwards the environment's branch
to it or pushes a revert commit that rejects it.`,
		Version: version,
		// Without a command, sluice says how to call it and exits 2, as a
		// misspelled command does.
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				c.SetOut(c.ErrOrStderr())
				_ = c.Help()
				return usageError{errors.New("no command given")}
			}
			err := fmt.Errorf("unknown command %q", args[0])
			if s := c.SuggestionsFor(args[0]); len(s) > 0 {
				err = fmt.Errorf("%w; did you mean %s?", err, strings.Join(s, " or "))
			}
			return usageError{err}
		},
		SilenceErrors: true,
		SilenceUsage:  true,
		// completion.go's command: only the shells we test, and a usage
		// error for any other.
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("sluice {{.Version}}\n")
	// The root runs only to refuse what is not a command: its usage is
	// "sluice [command]", not "sluice [flags]".
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(), "{{if .Runnable}}", "{{if and .Runnable .HasParent}}", 1))
	root.SuggestionsMinimumDistance = 2
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newRunCommand(stdout, stderr), newStatusCommand(stdout, stderr), newRenderCommand(stdout), newPreviewCommand(stdout), newPromoteCommand(stdout), newVersionCommand(stdout), newCompletionCommand(stdout))
	return root
}

func newRunCommand(stdout, stderr io.Writer) *cobra.Command {
	c := &cobra.Command{
		Use:                   "run --config FILE [--once]",
		DisableFlagsInUseLine: true,
		Short:                 "Drain every gate's queue, then keep polling (or exit with --once)",
		Long: `Run tests the commits queued on the source branch for each gate, oldest
first, in an ephemeral namespace of the cluster --kubeconfig names, and moves
the gate's target branch to each commit that passes or pushes a revert of each
that fails. Without --once it keeps polling; gates drain at the same time.

Exit codes: 0 when every queue drained (with --once) or the daemon was
stopped by a signal; 1 when a gate stopped or kept failing with an
infrastructure error; 2 when it was called wrongly.`,
		Example: `  sluice run --config sluice.yaml
  sluice run --config sluice.yaml --once --progress always
  sluice run --config sluice.yaml --listen :8080 --log-format json`,
		Args: noArgs,
	}
	f := defineRunFlags(c.Flags())
	configFlag(c, "config")
	fileFlag(c, "kubeconfig")
	enumFlag(c, "progress", "auto", "always", "never")
	enumFlag(c, "log-level", "debug", "info", "warn", "error")
	enumFlag(c, "log-format", "text", "json")
	c.RunE = func(c *cobra.Command, _ []string) error { return runCmd(c.Context(), f, stdout, stderr) }
	return c
}

func newStatusCommand(stdout, stderr io.Writer) *cobra.Command {
	c := &cobra.Command{
		Use:                   "status --config FILE [--output text|json]",
		DisableFlagsInUseLine: true,
		Short:                 "Show each gate's target tip, queue and recent verdicts",
		Long: `Status reads the repository (into memory: it works next to a running
daemon) and shows, for each gate, the target branch's tip, the commits queued
after it and the last commits up to it, with their verdicts, durations and
reasons. Verdicts are checked against the verdict key; without it they are
shown as unverified.

Exit codes: 0 when every gate's state could be read; 1 when one could not
(the remote refused the credentials, a branch is gone); 2 when it was called
wrongly.`,
		Example: `  sluice status --config sluice.yaml
  sluice status --config sluice.yaml --output json`,
		Args: noArgs,
	}
	f := defineStatusFlags(c.Flags())
	configFlag(c, "config")
	fileFlag(c, "kubeconfig")
	enumFlag(c, "output", "text", "json")
	enumFlag(c, "color", "auto", "always", "never")
	c.RunE = func(c *cobra.Command, _ []string) error { return statusCmd(c.Context(), f, stdout, stderr) }
	return c
}

func newVersionCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(stdout, "sluice %s\n", version)
			return err
		},
	}
}

// noArgs refuses positional arguments as a usage error.
func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("unexpected argument %q: %s takes only flags", args[0], c.CommandPath())}
	}
	return nil
}

// configFlag completes a configuration file name.
func configFlag(c *cobra.Command, name string) {
	_ = c.MarkFlagFilename(name, "yaml", "yml")
}

// fileFlag completes any file name.
func fileFlag(c *cobra.Command, name string) {
	_ = c.MarkFlagFilename(name)
}

// enumFlag completes a flag's fixed values.
func enumFlag(c *cobra.Command, name string, values ...string) {
	_ = c.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
}

// longFlags keeps the single-dash spelling of long flags (-config FILE,
// -once) that sluice accepted before it moved to cobra, whose flags are
// --config and -c: a single-dash word that names a long flag of the command
// is given its second dash. Everything after "--", and the value of a flag
// that takes one, is left alone.
func longFlags(root *cobra.Command, args []string) []string {
	cmd, _, err := root.Find(args)
	if err != nil {
		return args
	}
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		out = append(out, a)
		if a == "--" {
			return append(out, args[i+1:]...)
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := cmd.Flags().Lookup(name)
		if f == nil {
			continue
		}
		if !strings.HasPrefix(a, "--") && len(name) > 1 {
			out[len(out)-1] = "-" + a
		}
		if !hasValue && f.NoOptDefVal == "" && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	return out
}
