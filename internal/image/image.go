// Package image builds Sluice's OCI image without Docker or a base image:
// one layer holding the static binary, an /etc/passwd and /etc/group with a
// non-root user, and a home and /tmp directory; every timestamp is fixed, so
// the same binary and options always give the same digest.
//
// It is a build tool (see hack/image), never part of the sluice binary, and
// it never pushes anywhere: it writes an OCI layout and a tarball.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's user: the uid and gid distroless calls "nonroot".
const (
	UID  = 65532
	User = "65532:65532"
	// Entrypoint is where the binary lives in the image.
	Entrypoint = "/sluice"
)

// Label keys (OCI image spec, annotations.md).
const (
	LabelSource   = "org.opencontainers.image.source"
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
)

// Options describe the image.
type Options struct {
	// Binary is the path of a static sluice binary (see BuildBinary).
	Binary string
	// Version, Revision and Source become the OCI labels.
	Version, Revision, Source string
	// Created is every timestamp in the image: the config, the history and
	// each file. The zero value means the Unix epoch.
	Created time.Time
	// Arch is the binary's GOARCH; empty means runtime.GOARCH.
	Arch string
}

// BinaryOptions say how to build the binary that goes into the image.
type BinaryOptions struct {
	// Dir is the module root; Package is built from it (./cmd/sluice).
	Dir, Package string
	// Out is the path of the binary to write.
	Out string
	// Version is linked in as main.version.
	Version string
	// Arch is the GOARCH; empty means runtime.GOARCH.
	Arch string
}

// BuildBinary compiles a static binary whose bytes depend only on the
// source, the toolchain and the options: no cgo, no file paths, no build
// id and no VCS stamp.
func BuildBinary(ctx context.Context, o BinaryOptions) error {
	arch := o.Arch
	if arch == "" {
		arch = runtime.GOARCH
	}
	ldflags := "-s -w -buildid= -X main.version=" + o.Version
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", o.Out, o.Package)
	cmd.Dir = o.Dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=-buildvcs=false")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build %s: %w\n%s", o.Package, err, out)
	}
	return nil
}

// Build assembles the image from o.Binary.
func Build(o Options) (v1.Image, error) {
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("read binary: %w", err)
	}
	created := o.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	created = created.UTC()
	arch := o.Arch
	if arch == "" {
		arch = runtime.GOARCH
	}
	files, err := layerTar(bin, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(files)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "hack/image: " + Entrypoint + ", /etc/passwd, /etc/group"},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: created}
	cf.Config = v1.Config{
		Entrypoint: []string{Entrypoint},
		User:       User,
		WorkingDir: "/home/nonroot",
		Env:        []string{"PATH=/", "HOME=/home/nonroot"},
		Labels: map[string]string{
			LabelSource:   o.Source,
			LabelVersion:  o.Version,
			LabelRevision: o.Revision,
		},
	}
	return mutate.ConfigFile(img, cf)
}

// layerTar is the layer's files, root-owned unless said, all at created.
func layerTar(bin []byte, created time.Time) ([]byte, error) {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", UID, UID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", UID)
	entries := []struct {
		name string
		mode int64
		uid  int
		body []byte
		dir  bool
	}{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, body: []byte(group)},
		{name: "etc/passwd", mode: 0o644, body: []byte(passwd)},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, uid: UID, dir: true},
		{name: strings.TrimPrefix(Entrypoint, "/"), mode: 0o755, body: bin},
		{name: "tmp/", mode: 0o1777, dir: true},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid,
			ModTime: created, Format: tar.FormatPAX,
		}
		if e.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Written is where Write put the image.
type Written struct {
	Layout, Tarball string
	// Digest is the OCI manifest's: the layout's, and a registry's after
	// pushing the layout (crane push, skopeo copy oci:).
	Digest v1.Hash
	// ID is the config's digest: the image ID `docker load` shows. The
	// tarball is Docker's format, whose manifest (so its digest) Docker
	// makes up again on load; the config, hence the ID, is the same.
	ID v1.Hash
}

// Write writes img as an OCI layout directory dir/oci and a tarball
// dir/sluice.tar (`docker load`), both tagged repo:tag, and returns the
// image's digest. An existing layout is replaced.
func Write(img v1.Image, dir, repo, tag string) (Written, error) {
	ref, err := name.NewTag(repo + ":" + Tag(tag))
	if err != nil {
		return Written{}, fmt.Errorf("image name: %w", err)
	}
	w := Written{Layout: filepath.Join(dir, "oci"), Tarball: filepath.Join(dir, "sluice.tar")}
	if w.Digest, err = img.Digest(); err != nil {
		return Written{}, err
	}
	if w.ID, err = img.ConfigName(); err != nil {
		return Written{}, err
	}
	if err := os.RemoveAll(w.Layout); err != nil {
		return Written{}, err
	}
	p, err := layout.Write(w.Layout, empty.Index)
	if err != nil {
		return Written{}, fmt.Errorf("write OCI layout: %w", err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": ref.Name(),
	})); err != nil {
		return Written{}, fmt.Errorf("write OCI layout: %w", err)
	}
	if err := tarball.WriteToFile(w.Tarball, ref, img); err != nil {
		return Written{}, fmt.Errorf("write tarball: %w", err)
	}
	return w, nil
}

var badTagChars = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// Tag turns a version (git describe: v1.2.0-3-gabc+dirty) into a valid tag.
func Tag(version string) string {
	t := badTagChars.ReplaceAllString(version, "-")
	t = strings.TrimLeft(t, ".-")
	if t == "" {
		return "latest"
	}
	if len(t) > 128 {
		t = t[:128]
	}
	return t
}
