package gitserver

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// serverConfig is the global git configuration of the server's git processes.
// Automatic gc is off: receive-pack would otherwise start a detached
// `git gc --auto` that can still be writing when the test removes the repos.
const serverConfig = `[gc]
	auto = 0
	autoDetach = false
[receive]
	autogc = false
[maintenance]
	auto = false
[init]
	defaultBranch = main
`

// clientConfig is the global git configuration of Work's git processes.
const clientConfig = `[user]
	name = Test
	email = test@example.com
[init]
	defaultBranch = main
[commit]
	gpgSign = false
[tag]
	gpgSign = false
[gc]
	auto = 0
	autoDetach = false
[maintenance]
	auto = false
[advice]
	detachedHead = false
`

// env is a hermetic environment for git: its own HOME and global config,
// no system config, no prompts.
type env struct {
	vars []string
}

// newEnv creates home with gitconfig as its global git configuration.
func newEnv(t testing.TB, home, gitconfig string) env {
	t.Helper()
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	global := filepath.Join(home, ".gitconfig")
	if err := os.WriteFile(global, []byte(gitconfig), 0o644); err != nil {
		t.Fatal(err)
	}
	return env{vars: []string{
		"HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=" + global,
		"GIT_TERMINAL_PROMPT=0",
		"LC_ALL=C", // git's messages are matched by tests
	}}
}

// with returns a copy of e with extra variables added.
func (e env) with(vars ...string) env {
	return env{vars: append(append([]string(nil), e.vars...), vars...)}
}

// cmdEnv is the full environment of a git command: the host's environment
// without anything that steers git or asks for passwords, plus e.
func (e env) cmdEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "GIT_"),
			k == "HOME", k == "XDG_CONFIG_HOME", k == "SSH_ASKPASS",
			k == "LC_ALL", k == "LANG", k == "LANGUAGE":
			continue
		}
		out = append(out, kv)
	}
	return append(out, e.vars...)
}

// run runs git in dir and returns its trimmed stdout. The error names the
// command and carries git's stderr; arguments never hold credentials.
func (e env) run(ctx context.Context, dir string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = e.cmdEnv()
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// mustRun is run that fails the test on error.
func (e env) mustRun(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := e.run(t.Context(), dir, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var execPath = sync.OnceValues(func() (string, error) {
	out, err := exec.Command("git", "--exec-path").Output()
	return strings.TrimSpace(string(out)), err
})

// gitExecPath returns the directory holding git's helper programs.
func gitExecPath(t testing.TB) string {
	t.Helper()
	p, err := execPath()
	if err != nil {
		t.Fatalf("gitserver: git --exec-path: %v", err)
	}
	return p
}
