// Command democtl runs what `make demo` needs besides sluice itself: a
// detached test control plane, a Git server on loopback, and a wait for
// Sluice's queue to drain. test/demo/demo.sh drives it; nothing else should.
//
// Every process it leaves running names the demo directory on its command
// line, and `democtl down` stops them all and removes the directory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const usage = `democtl runs the infrastructure of make demo (see test/demo/demo.sh).

Usage:
  democtl cluster-up   --dir DIR [--name NAME] [--nodes N]   start a detached cluster; print its kubeconfig
  democtl git-init     --root DIR --home DIR --name NAME [--protect BRANCH,...]
  democtl git-serve    --root DIR --home DIR --url-file FILE  serve the repositories until SIGTERM
  democtl wait-drained --sluice BIN --config FILE --pid-file FILE [--timeout D]
  democtl down         --dir DIR                              stop everything under DIR and remove it
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "democtl: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ error }

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return usageError{errors.New("no command")}
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	parse := func() error {
		if err := fs.Parse(args); err != nil {
			return usageError{err}
		}
		return nil
	}
	switch cmd {
	case "cluster-up":
		dir := fs.String("dir", "", "work directory of the cluster")
		name := fs.String("name", "sluice-demo", "cluster name")
		nodes := fs.Int("nodes", 2, "simulated nodes")
		if err := parse(); err != nil {
			return err
		}
		return clusterUp(ctx, *dir, *name, *nodes)
	case "git-init":
		root := fs.String("root", "", "directory of the bare repositories")
		home := fs.String("home", "", "home of the server's git processes")
		name := fs.String("name", "", "repository name")
		protect := fs.String("protect", "", "comma-separated branches that move only by fast-forward")
		if err := parse(); err != nil {
			return err
		}
		return gitInit(ctx, *root, *home, *name, *protect)
	case "git-serve":
		root := fs.String("root", "", "directory of the bare repositories")
		home := fs.String("home", "", "home of the server's git processes")
		urlFile := fs.String("url-file", "", "file to write the server's URL to once it listens")
		if err := parse(); err != nil {
			return err
		}
		return gitServe(ctx, *root, *home, *urlFile)
	case "wait-drained":
		sluice := fs.String("sluice", "", "sluice binary")
		config := fs.String("config", "", "sluice configuration file")
		pidFile := fs.String("pid-file", "", "pid file of the running sluice")
		timeout := fs.Duration("timeout", defaultWaitTimeout, "give up after this long")
		if err := parse(); err != nil {
			return err
		}
		return waitDrained(ctx, *sluice, *config, *pidFile, *timeout)
	case "down":
		dir := fs.String("dir", "", "the demo directory")
		if err := parse(); err != nil {
			return err
		}
		return down(*dir)
	case "-h", "--help", "help":
		fmt.Print(usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return usageError{fmt.Errorf("unknown command %q", cmd)}
}

// required fails when a flag was left empty.
func required(flags map[string]string) error {
	for name, v := range flags {
		if v == "" {
			return usageError{fmt.Errorf("--%s is required", name)}
		}
	}
	return nil
}
