// Package demo_test runs `make demo` headless: the article's story end to
// end with the real binaries, then `demo.sh down`, which must leave nothing.
package demo_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gitops/sluice/test/cluster"
)

func TestDemo(t *testing.T) {
	root := repoRoot()
	requireTools(t)
	sluice := buildSluice(t, root)
	dir := filepath.Join(t.TempDir(), "demo")

	env := append(os.Environ(), "SLUICE_DEMO_DIR="+dir, "SLUICE_BIN="+sluice, "DEMO_HEADLESS=1",
		"DEMO_WAIT=6m") // make test runs other clusters alongside
	t.Cleanup(func() {
		if out, err := demo(context.Background(), root, env, "down"); err != nil {
			t.Errorf("demo.sh down: %v\n%s", err, out)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			logFiles(t, dir)
		}
	})

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	begin := time.Now()
	out, err := demo(ctx, root, env)
	t.Logf("demo.sh took %s; its output:\n%s", time.Since(begin).Round(time.Second), out)
	if err != nil {
		t.Fatalf("demo.sh: %v", err)
	}

	// The story, in order, as the reader sees it.
	var at int
	for _, headline := range []string{
		"» Berlin: bump A to v3",
		"» New York: bump Z to v1",
		"» London: bump B to v4",
		"» New York: bump Z to v2",
		"== sluice status",
		"== main and staging",
		"== The revert Sluice pushed",
		"== Shared development → staging: promotion",
		"== The promotion Sluice pushed",
		"== A preview: tested staging plus London's working tree",
		"== What to try next",
	} {
		i := strings.Index(out[at:], headline)
		if i < 0 {
			t.Errorf("output lacks %q after offset %d", headline, at)
			continue
		}
		at += i + len(headline)
	}
	for _, want := range []*regexp.Regexp{
		// Sluice's progress lines: the bad commit fails, and is reverted ...
		// (the demo's own "» " headlines may come in between, as Sluice
		// runs alongside the script).
		regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d \[staging\] [0-9a-f]{7} "bump B to v4" by London team\n(?:(?:\s+|» ).*\n)*?\s+failed\s`),
		regexp.MustCompile(`(?m)^\s+revert\s+[0-9a-f]{7} pushed to main`),
		// ... and staging is fast-forwarded, in the end to main's tip.
		regexp.MustCompile(`(?m)^\s+fast-forward\s+staging → [0-9a-f]{7}`),
		// The status table.
		regexp.MustCompile(`(?m)^gate staging  environments/staging → staging$`),
		regexp.MustCompile(`(?m)^  queue    empty: staging holds everything on main`),
		regexp.MustCompile(`(?m)^    [0-9a-f]{7}  Revert "bump B to v4"\s+Sluice\s+passed`),
		// The graph, main and staging at one commit, with the notes; the
		// revert in full.
		regexp.MustCompile(`(?m)^\* [0-9a-f]+ \([^)]*origin/(?:main|staging)[^)]*origin/(?:main|staging)[^)]*\) `),
		regexp.MustCompile(`(?m)^\|\s+verdict: failed$`),
		regexp.MustCompile(`(?m)^    Sluice-Rejected: [0-9a-f]{40}$`),
		// The promotion: logged, pushed with its trailers, and passed by staging.
		regexp.MustCompile(`msg=promoted gate=shared-dev to=staging file=environments/shared-dev/versions/a.yaml`),
		regexp.MustCompile(`(?m)^    Promote a v4 from shared-dev to staging$`),
		regexp.MustCompile(`(?m)^    Sluice-Promoted-From: [0-9a-f]{40}$`),
		regexp.MustCompile(`(?m)^    gate: staging\n    verdict: passed$`),
		// The preview: B's Deployment alone, the other Services stand-ins.
		regexp.MustCompile(`(?m)^deployment\.apps/b\s`),
		regexp.MustCompile(`(?m)^service/a\s+ExternalName\s`),
	} {
		if !want.MatchString(out) {
			t.Errorf("output does not match %s", want)
		}
	}

	begin = time.Now()
	down, err := demo(ctx, root, env, "down")
	if err != nil {
		t.Fatalf("demo.sh down: %v\n%s", err, down)
	}
	t.Logf("demo.sh down took %s: %s", time.Since(begin).Round(time.Millisecond), down)
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("demo.sh down left %s behind (stat: %v)", dir, err)
	}
	if left := processesNaming(dir); len(left) > 0 {
		t.Errorf("demo.sh down left processes running:\n%s", strings.Join(left, "\n"))
	}
}

// demo runs test/demo/demo.sh with args and returns its output.
func demo(ctx context.Context, root string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(root, "test", "demo", "demo.sh")}, args...)...)
	cmd.Dir = root
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Should a background process of the demo hold the output open, do not
	// wait for it forever.
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	return out.String(), err
}

// requireTools skips the test outside CI when `make tools` has not run; in
// CI the binaries must be there.
func requireTools(t *testing.T) {
	t.Helper()
	dir, err := cluster.ToolsDir("")
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, name := range cluster.Tools {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm()&0o111 == 0 {
			missing = append(missing, name)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "missing in " + dir + ": " + strings.Join(missing, ", ") + "; run make tools"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// buildSluice builds the sluice binary the demo runs, from this checkout.
func buildSluice(t *testing.T, root string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sluice")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/sluice")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build sluice: %v\n%s", err, out)
	}
	return bin
}

// logFiles logs the demo's log files, to tell why it failed.
func logFiles(t *testing.T, dir string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "logs", "*"))
	files = append(files, filepath.Join(dir, "sluice.log"), filepath.Join(dir, "cluster", "kwokctl.log"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if len(data) > 16<<10 {
			data = data[len(data)-16<<10:]
		}
		t.Logf("--- %s\n%s", f, data)
	}
}

// processesNaming lists the live processes whose command line names dir or
// a path in it, read from /proc independently of the demo's bookkeeping.
func processesNaming(dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var found []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil || e.Name() == strconv.Itoa(os.Getpid()) {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
			continue
		}
		found = append(found, e.Name()+": "+string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
	}
	return found
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
