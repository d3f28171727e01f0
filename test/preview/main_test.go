// Package preview_test runs `sluice preview` (the real binary) against a real
// control plane (test/cluster) and a real Git server (test/gitserver): a
// 100-service staging with one changed service, from a branch and from a
// working tree; expiry, a deleted branch, Gateway API routing, bad input.
package preview_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sluice-gitops/sluice/test/cluster"
)

var sluiceBin string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sluice-preview-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	sluiceBin = filepath.Join(dir, "sluice")
	build := exec.Command("go", "build", "-o", sluiceBin, "github.com/sluice-gitops/sluice/cmd/sluice")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build sluice: %v\n%s", err, out)
		return 1
	}
	return cluster.Main(m)
}
