package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
)

// A detached cluster outlives the process that starts it, for `make demo`:
// there is no watchdog, every file lives in a work directory the caller
// names, and a later process finds the cluster there again (Attach) or removes
// it (StopDetached). Tests use Start instead, whose clusters cannot leak.

// detachedFile, in the work directory of a detached cluster, records what
// Attach and StopDetached need to find the cluster again.
const detachedFile = "detached.json"

type detachedState struct {
	Name  string `json:"name"`
	Tools string `json:"tools"`
}

// StartDetached creates and starts a cluster that keeps running after this
// process exits, with every file in workdir, which must not exist or be
// empty. It returns once the cluster is ready, as Start does. Stop it with
// Stop, or from another process with StopDetached (or Attach and Stop). On
// error nothing of the cluster is left behind, workdir included.
func StartDetached(ctx context.Context, opts Options, workdir string) (*Cluster, error) {
	opts, tools, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	workdir, err = filepath.Abs(workdir)
	if err != nil {
		return nil, err
	}
	if entries, err := os.ReadDir(workdir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("start detached cluster: %s is not empty; stop the cluster in it first", workdir)
	}
	if err := os.MkdirAll(workdir, 0o700); err != nil {
		return nil, err
	}
	state := detachedState{Name: opts.Name, Tools: tools}
	c := detached(workdir, state)
	// The state goes first, so that StopDetached can remove a cluster whose
	// creation was interrupted.
	data, err := json.Marshal(state)
	if err == nil {
		err = os.WriteFile(filepath.Join(workdir, detachedFile), data, 0o600)
	}
	if err == nil {
		err = c.create(ctx, opts)
	}
	if err != nil {
		if stopErr := c.Stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", stopErr))
		}
		return nil, err
	}
	return c, nil
}

// Attach returns the detached cluster StartDetached started in workdir, to
// use or Stop. It fails, wrapping fs.ErrNotExist, when workdir holds none.
func Attach(workdir string) (*Cluster, error) {
	c, err := attach(workdir)
	if err != nil {
		return nil, err
	}
	c.Kubeconfig = filepath.Join(c.kwokDir, "kubeconfig.yaml")
	c.Config, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig of detached cluster: %w", err)
	}
	c.Config.QPS, c.Config.Burst = 50, 100
	return c, nil
}

// StopDetached stops the detached cluster in workdir and removes workdir, as
// Stop does, also when the cluster was never fully created or is half
// gone. A workdir that does not exist is not an error.
func StopDetached(workdir string) error {
	c, err := attach(workdir)
	switch {
	case err == nil:
		return c.Stop()
	case errors.Is(err, fs.ErrNotExist):
		// No state: at most a directory, and processes naming it, from a
		// StartDetached killed before it wrote its state.
		abs, err := filepath.Abs(workdir)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return (&Cluster{Name: "detached", Workdir: abs}).Stop()
	default:
		return err
	}
}

// attach reads the state of the detached cluster in workdir.
func attach(workdir string) (*Cluster, error) {
	workdir, err := filepath.Abs(workdir)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(workdir, detachedFile))
	if err != nil {
		return nil, fmt.Errorf("attach to detached cluster: %w", err)
	}
	var state detachedState
	if err := json.Unmarshal(data, &state); err != nil || state.Name == "" || state.Tools == "" {
		return nil, fmt.Errorf("attach to detached cluster: %s is not a cluster's state (%v)", filepath.Join(workdir, detachedFile), err)
	}
	c := detached(workdir, state)
	if _, err := os.Stat(c.config); err == nil {
		// kwokctl may have run, so Stop has it delete the cluster.
		c.env = kwokctlEnv(filepath.Join(workdir, "kwok"), filepath.Join(workdir, "home"), c.tools)
	}
	return c, nil
}

// detached lays a cluster out in workdir the way Start lays it out in its
// temporary directory.
func detached(workdir string, state detachedState) *Cluster {
	return &Cluster{
		Name:    state.Name,
		Workdir: workdir,
		tools:   state.Tools,
		kwokDir: filepath.Join(workdir, "kwok", "clusters", state.Name),
		config:  filepath.Join(workdir, "kwokctl.yaml"),
	}
}
