// Command sluice is the GitOps promotion gate: `sluice run` drains each
// gate's queue, `sluice status` shows it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluice-gitops/sluice/manifests"
)

// version is set by the linker (-X main.version=...).
var version = "dev"

const usage = `Sluice tests each commit that changes an environment's kustomization, in
order, in an ephemeral namespace, then fast-forwards the environment's branch
to it or pushes a revert commit that rejects it.

Usage:
  sluice run    --config FILE [--once] [--kubeconfig FILE] [--progress auto|always|never]
  sluice status --config FILE [--output text|json]
  sluice version

Run 'sluice COMMAND -h' for the flags of a command.
`

func main() {
	manifests.MaybeRunWorker() // a render runs in a copy of this process
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = runCmd(ctx, args[1:], stdout, stderr)
	case "status":
		err = statusCmd(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "sluice %s\n", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err == nil {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "sluice %s: %v\n", args[0], err)
		return 2
	}
	fmt.Fprintf(stderr, "sluice %s: %v\n", args[0], err)
	return 1
}

type usageError struct{ error }
