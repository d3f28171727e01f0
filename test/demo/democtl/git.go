package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluice-gitops/sluice/test/gitserver"
)

// gitInit creates a bare repository that accepts pushes over HTTP, with the
// pre-receive hook of a Git host whose protected branches move only by
// fast-forward: the demo shows Sluice never needs more.
func gitInit(ctx context.Context, root, home, name, protect string) error {
	if err := required(map[string]string{"root": root, "home": home, "name": name}); err != nil {
		return err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	dir, err := gitserver.CreateBareRepo(ctx, root, home, name)
	if err != nil {
		return err
	}
	if protect == "" {
		return nil
	}
	hook := gitserver.ProtectBranches(strings.Split(protect, ",")...)
	return os.WriteFile(filepath.Join(dir, "hooks", "pre-receive"), []byte(hook), 0o755)
}

// gitServe serves the repositories under root on a free loopback port until
// ctx ends, and writes the server's URL to urlFile once it accepts
// connections (by rename, so a reader never sees half of it).
func gitServe(ctx context.Context, root, home, urlFile string) error {
	if err := required(map[string]string{"root": root, "home": home, "url-file": urlFile}); err != nil {
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
	url := "http://" + l.Addr().String()
	tmp := urlFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(url+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, urlFile); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "serving %s at %s\n", root, url)

	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return fmt.Errorf("shut down git server: %w", err)
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
