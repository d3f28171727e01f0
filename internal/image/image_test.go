package image

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// buildImage runs what `make image` runs: compile the binary into its own
// directory, build the image from it, write the layout and the tarball.
func buildImage(t *testing.T, version string, created time.Time) Written {
	t.Helper()
	if testing.Short() {
		t.Skip("compiles the sluice binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sluice")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	if err := BuildBinary(ctx, BinaryOptions{Dir: "../..", Package: "./cmd/sluice", Out: bin, Version: version}); err != nil {
		t.Fatal(err)
	}
	img, err := Build(Options{Binary: bin, Version: version, Revision: "0123456789abcdef0123456789abcdef01234567", Source: "https://example.com/sluice", Created: created})
	if err != nil {
		t.Fatal(err)
	}
	w, err := Write(img, dir, "example.com/sluice", version)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestImageRunsSluiceVersionAsNonRoot(t *testing.T) {
	const version = "v1.2.3+test"
	w := buildImage(t, version, time.Unix(1700000000, 0))

	img, err := tarball.ImageFromPath(w.Tarball, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Docker's tarball format keeps the config (the image ID), not the
	// OCI manifest.
	if id, err := img.ConfigName(); err != nil || id != w.ID {
		t.Fatalf("tarball image ID %v (%v), Write said %v", id, err, w.ID)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	want := v1.Config{
		Entrypoint: []string{"/sluice"},
		User:       "65532:65532",
		WorkingDir: "/home/nonroot",
		Env:        []string{"PATH=/", "HOME=/home/nonroot"},
		Labels: map[string]string{
			"org.opencontainers.image.source":   "https://example.com/sluice",
			"org.opencontainers.image.version":  version,
			"org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
		},
	}
	if diff := cmp.Diff(want, cf.Config); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if cf.OS != "linux" || !cf.Created.Time.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("os %q created %v, want linux at SOURCE_DATE_EPOCH", cf.OS, cf.Created.Time)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v; want one", len(layers), err)
	}

	// The files, as a runtime unpacks them.
	files := map[string]*tar.Header{}
	var passwd string
	dir := t.TempDir()
	tr := tar.NewReader(mutate.Extract(img))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = h
		switch h.Name {
		case "etc/passwd":
			b, _ := io.ReadAll(tr)
			passwd = string(b)
		case "sluice":
			f, err := os.OpenFile(filepath.Join(dir, "sluice"), os.O_CREATE|os.O_WRONLY, os.FileMode(h.Mode))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
	}
	for name, h := range files {
		if !h.ModTime.Equal(time.Unix(1700000000, 0)) {
			t.Errorf("%s: mtime %v, want SOURCE_DATE_EPOCH", name, h.ModTime)
		}
	}
	if h := files["sluice"]; h == nil || h.Mode != 0o755 || h.Uid != 0 {
		t.Errorf("sluice: %+v, want root-owned 0755 (the user cannot replace it)", h)
	}
	if !strings.Contains(passwd, "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd has no user 65532:\n%s", passwd)
	}

	out, err := exec.Command(filepath.Join(dir, "sluice"), "version").CombinedOutput()
	if err != nil {
		t.Fatalf("sluice version from the image: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "sluice "+version {
		t.Errorf("sluice version = %q, want %q", got, "sluice "+version)
	}

	// The layout holds the same image.
	idx, err := layout.ImageIndexFromPath(w.Layout)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 || m.Manifests[0].Digest != w.Digest || m.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "example.com/sluice:v1.2.3-test" {
		t.Errorf("layout index %+v, want one manifest %v tagged example.com/sluice:v1.2.3-test", m.Manifests, w.Digest)
	}
}

func TestImageIsReproducible(t *testing.T) {
	// Two binaries compiled one after the other, two images, one digest.
	a := buildImage(t, "v0.0.0-repro", time.Time{})
	b := buildImage(t, "v0.0.0-repro", time.Time{})
	if a.Digest != b.Digest || a.ID != b.ID {
		t.Fatalf("two builds gave %v (ID %v) and %v (ID %v)", a.Digest, a.ID, b.Digest, b.ID)
	}
	ta, _ := os.ReadFile(a.Tarball)
	tb, _ := os.ReadFile(b.Tarball)
	if string(ta) != string(tb) {
		t.Error("the two tarballs differ")
	}
}

func TestTag(t *testing.T) {
	tests := []struct{ version, want string }{
		{"v1.2.0", "v1.2.0"},
		{"v1.2.0-3-gabcdef0-dirty", "v1.2.0-3-gabcdef0-dirty"},
		{"v1.2.3+meta", "v1.2.3-meta"},
		{"", "latest"},
		{"..x", "x"},
		{strings.Repeat("a", 200), strings.Repeat("a", 128)},
	}
	for _, tt := range tests {
		if got := Tag(tt.version); got != tt.want {
			t.Errorf("Tag(%q) = %q, want %q", tt.version, got, tt.want)
		}
	}
}
