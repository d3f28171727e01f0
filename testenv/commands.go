package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"

	"k8s.io/client-go/rest"
)

// writeKubeconfig is used when the daemon got its cluster from somewhere
// other than a file (in-cluster): host commands still need one.
func writeKubeconfig(dir string, cfg *rest.Config) (string, error) {
	f, err := os.CreateTemp(dir, "kubeconfig-*")
	if err != nil {
		return "", err
	}
	defer f.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: %s\n", cfg.Host)
	if cfg.CAFile != "" {
		fmt.Fprintf(&b, "    certificate-authority: %s\n", cfg.CAFile)
	}
	fmt.Fprintf(&b, "users:\n- name: u\n  user:\n")
	if cfg.BearerTokenFile != "" {
		fmt.Fprintf(&b, "    tokenFile: %s\n", cfg.BearerTokenFile)
	}
	fmt.Fprintf(&b, "contexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n")
	if _, err := f.WriteString(b.String()); err != nil {
		return "", err
	}
	return f.Name(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// maxOutput bounds what is kept of a host command's output.
const maxOutput = 64 << 10

// runCommands runs the gate's host-side test commands, one after another,
// with the test namespace, commit and kubeconfig in their environment.
func (k *Cluster) runCommands(ctx context.Context, spec TestSpec) error {
	kubeconfig := k.kubeconfig
	if kubeconfig == "" {
		// In-cluster: write a kubeconfig naming the service account's token file.
		dir, err := os.MkdirTemp("", "sluice-kubeconfig-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if kubeconfig, err = writeKubeconfig(dir, k.restConfig); err != nil {
			return err
		}
	}
	for _, c := range spec.Commands {
		cctx, cancel := context.WithTimeout(ctx, c.Timeout)
		cmd := exec.CommandContext(cctx, c.Args[0], c.Args[1:]...)
		cmd.Env = append(os.Environ(),
			"SLUICE_NAMESPACE="+spec.Namespace,
			"SLUICE_COMMIT="+spec.Commit,
			"SLUICE_GATE="+spec.Gate,
			"KUBECONFIG="+kubeconfig,
		)
		out := &tailBuffer{max: maxOutput}
		cmd.Stdout, cmd.Stderr = out, out
		cmd.WaitDelay = 5 * time.Second
		err := cmd.Run()
		timedOut := errors.Is(cctx.Err(), context.DeadlineExceeded)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var exitErr *exec.ExitError
		switch {
		case err == nil:
			continue
		case timedOut:
			return faultf(StepCommands, "test command %s timed out after %s\n%s", c.Name, c.Timeout, firstLines(out.String(), 20))
		case errors.As(err, &exitErr):
			return faultf(StepCommands, "test command %s exited with code %d\n%s", c.Name, exitErr.ExitCode(), lastLines(out.String(), 20))
		default:
			// The program could not be started: the host's fault, not the commit's.
			return fmt.Errorf("test command %s: %w", c.Name, err)
		}
	}
	return nil
}

// firstLines keeps the first n lines of s, noting how many were cut.
func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= n {
		return strings.Join(lines, "\n")
	}
	return strings.Join(lines[:n], "\n") + fmt.Sprintf("\n… (%d more lines)", len(lines)-n)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	buf bytes.Buffer
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return t.buf.String() }
