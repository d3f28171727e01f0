package gitrepo_test

import (
	"os"
	"testing"

	"github.com/sluice-gitops/sluice/manifests"
)

// TestMain lets the test binary serve as the render worker that
// manifests.Render starts (BenchmarkTreeFSRenderArticle renders).
func TestMain(m *testing.M) {
	manifests.MaybeRunWorker()
	os.Exit(m.Run())
}
