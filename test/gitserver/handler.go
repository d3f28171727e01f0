package gitserver

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cgi"
	"os"
	"path/filepath"
)

// HandlerOptions configure NewHandler.
type HandlerOptions struct {
	Options
	// Home is a directory of the handler's own, for the git configuration
	// of its git processes; it is created if missing. Required.
	Home string
	// Stderr receives what git http-backend writes to its stderr; nil
	// discards it.
	Stderr io.Writer
}

// NewHandler returns the smart-HTTP handler of a Server, serving the bare
// repositories under root, for a server that outlives any test: `make demo`
// serves it from a process of its own. It is the same hermetic backend Start
// sets up, with the same auth and handling of chunked requests.
func NewHandler(root string, opts HandlerOptions) (http.Handler, error) {
	s, err := newServer(root, opts)
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(s.serveHTTP), nil
}

// CreateBareRepo creates the bare repository root/name.git as
// Server.CreateRepo does, with git configured by home (see HandlerOptions),
// and returns its directory.
func CreateBareRepo(ctx context.Context, root, home, name string) (string, error) {
	e, err := makeEnv(home, serverConfig)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, filepath.FromSlash(repoName(name))+".git")
	if _, err := os.Stat(dir); err == nil {
		return "", fmt.Errorf("gitserver: repository %s already exists", name)
	}
	if _, err := e.run(ctx, root, "init", "--quiet", "--bare", "--initial-branch=main", dir); err != nil {
		return "", err
	}
	if _, err := e.run(ctx, dir, "config", "http.receivepack", "true"); err != nil {
		return "", err
	}
	return dir, nil
}

// newServer is the part of Start that needs no test.
func newServer(root string, opts HandlerOptions) (*Server, error) {
	if opts.Home == "" {
		return nil, fmt.Errorf("gitserver: HandlerOptions.Home is required")
	}
	exec, err := execPath()
	if err != nil {
		return nil, fmt.Errorf("gitserver: git --exec-path: %w", err)
	}
	backendPath := filepath.Join(exec, "git-http-backend")
	if _, err := os.Stat(backendPath); err != nil {
		return nil, fmt.Errorf("gitserver: git http-backend not found: %w", err)
	}
	root, err = filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	e, err := makeEnv(opts.Home, serverConfig)
	if err != nil {
		return nil, err
	}
	stderr := opts.Stderr
	if stderr == nil {
		stderr = io.Discard
	}
	s := &Server{Root: root, opts: opts.Options, env: e}
	s.available.Store(true)
	s.backend = &cgi.Handler{
		Path:   backendPath,
		Dir:    root,
		Env:    append([]string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}, e.vars...),
		Stderr: stderr,
		Logger: log.New(stderr, "", 0),
	}
	return s, nil
}

// makeEnv is newEnv for callers without a test.
func makeEnv(home, gitconfig string) (env, error) {
	home, err := filepath.Abs(home)
	if err != nil {
		return env{}, err
	}
	if err := os.MkdirAll(home, 0o755); err != nil {
		return env{}, err
	}
	global := filepath.Join(home, ".gitconfig")
	if err := os.WriteFile(global, []byte(gitconfig), 0o644); err != nil {
		return env{}, err
	}
	return env{vars: []string{
		"HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=" + global,
		"GIT_TERMINAL_PROMPT=0",
		"LC_ALL=C",
	}}, nil
}
