package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// kwokctl v0.8.0 has no command to stop or start one component (only the
// whole cluster), so StopComponent and StartComponent do what its binary
// runtime does: the command line of every component is in the cluster's
// kwok.yaml, and the process ID in pids/<binary name>.pid, which `kwokctl
// delete cluster` reads to stop it.

// StopComponent kills one component of the cluster (e.g. KubeApiserver, to
// simulate an API server outage) and returns once the process is gone.
// Stopping a stopped component does nothing.
func (c *Cluster) StopComponent(ctx context.Context, name string) error {
	if c.external {
		return fmt.Errorf("stop %s: %w", name, ErrExternal)
	}
	comp, err := c.component(name)
	if err != nil {
		return err
	}
	pidPath := comp.pidPath()
	pid, err := readPid(pidPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	// SIGKILL, as kwokctl does: an outage, not a graceful shutdown that would
	// keep serving for a while.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	for alive(pid) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("stop %s: %w", name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := os.Remove(pidPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// StartComponent starts a component stopped by StopComponent again, with the
// command line kwokctl gave it. For KubeApiserver it returns once the API
// server is ready. Starting a running component does nothing.
func (c *Cluster) StartComponent(ctx context.Context, name string) error {
	if c.external {
		return fmt.Errorf("start %s: %w", name, ErrExternal)
	}
	comp, err := c.component(name)
	if err != nil {
		return err
	}
	if pid, err := readPid(comp.pidPath()); err == nil && alive(pid) {
		return nil
	}
	logFile, err := os.OpenFile(filepath.Join(comp.WorkDir, "logs", comp.binaryName()+".log"),
		os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(comp.Binary, comp.Args...)
	cmd.Dir = comp.WorkDir
	cmd.Env = append([]string(nil), c.env...)
	for _, e := range comp.Envs {
		cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// A session of its own, like kwokctl's components: a ^C in the terminal
	// is for the test binary, whose cleanup stops the cluster.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = cmd.Wait() }() // reap it whenever it ends
	if err := os.WriteFile(comp.pidPath(), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
		return err
	}
	if name == KubeApiserver {
		return c.waitAPIServer(ctx)
	}
	return nil
}

// waitAPIServer waits until the API server answers /readyz.
func (c *Cluster) waitAPIServer(ctx context.Context) error {
	client, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	for {
		err := client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w (last: %v)", KubeApiserver, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// component is what kwokctl records of a component in kwok.yaml.
type component struct {
	Name    string   `json:"name"`
	Binary  string   `json:"binary"`
	Args    []string `json:"args"`
	WorkDir string   `json:"workDir"`
	Envs    []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"envs"`
}

func (comp component) binaryName() string {
	base := filepath.Base(comp.Binary)
	return strings.TrimSuffix(base, filepath.Ext(base))
}

func (comp component) pidPath() string {
	return filepath.Join(comp.WorkDir, "pids", comp.binaryName()+".pid")
}

// component reads the named component from the cluster's kwok.yaml.
func (c *Cluster) component(name string) (component, error) {
	data, err := os.ReadFile(filepath.Join(c.kwokDir, "kwok.yaml"))
	if err != nil {
		return component{}, err
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var known []string
	for {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return component{}, fmt.Errorf("read kwok.yaml: %w", err)
		}
		var conf struct {
			Kind       string      `json:"kind"`
			Components []component `json:"components"`
		}
		if err := yaml.Unmarshal(doc, &conf); err != nil {
			return component{}, fmt.Errorf("read kwok.yaml: %w", err)
		}
		if conf.Kind != "KwokctlConfiguration" {
			continue
		}
		for _, comp := range conf.Components {
			if comp.Name == name {
				return comp, nil
			}
			known = append(known, comp.Name)
		}
	}
	return component{}, fmt.Errorf("no component %q in test cluster %s (it has %s)", name, c.Name, strings.Join(known, ", "))
}

func readPid(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return pid, nil
}
