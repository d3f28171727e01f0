// Command image builds Sluice's OCI image without Docker (`make image`):
// it compiles a static, reproducible sluice binary, puts it on no base image
// (internal/image) and writes an OCI layout and a tarball, then prints the
// digest. It lives under hack/ because it is a build tool, not a product:
// nothing in cmd/ imports it and it is not in the sluice binary.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sluice-gitops/sluice/internal/image"
)

func main() {
	out := flag.String("out", "build/image", "output `directory` (oci/ layout and sluice.tar)")
	version := flag.String("version", "dev", "version linked into the binary and the org.opencontainers.image.version label")
	revision := flag.String("revision", "", "the commit, for the org.opencontainers.image.revision label")
	source := flag.String("source", "https://github.com/sluice-gitops/sluice", "org.opencontainers.image.source label")
	repo := flag.String("repo", "ghcr.io/sluice-gitops/sluice", "repository the tarball and layout are tagged with (the tag is the version)")
	arch := flag.String("arch", "", "GOARCH of the image (default: this machine's)")
	flag.Parse()
	if err := build(*out, *version, *revision, *source, *repo, *arch); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func build(out, version, revision, source, repo, arch string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	// Every timestamp is SOURCE_DATE_EPOCH (reproducible-builds.org), or
	// the Unix epoch without it.
	var created time.Time
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH %q: want seconds since the epoch", s)
		}
		created = time.Unix(sec, 0)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	bin := filepath.Join(out, "sluice")
	if err := image.BuildBinary(ctx, image.BinaryOptions{Dir: ".", Package: "./cmd/sluice", Out: bin, Version: version, Arch: arch}); err != nil {
		return err
	}
	img, err := image.Build(image.Options{Binary: bin, Version: version, Revision: revision, Source: source, Created: created, Arch: arch})
	if err != nil {
		return err
	}
	w, err := image.Write(img, out, repo, version)
	if err != nil {
		return err
	}
	fmt.Printf("%s\n  layout   %s\n  tarball  %s (docker load; image ID %s)\n", w.Digest, w.Layout, w.Tarball, w.ID)
	return nil
}
