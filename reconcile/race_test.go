package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gitops/sluice/test/gitserver"
)

// TestDaemonRacesWithWriters runs the daemon while three people push to
// main through a server that protects main and staging, some of their
// commits breaking, so that Sluice's reverts race with their pushes. When
// the queue is drained every commit has its verdict, in order; every
// broken commit is reverted exactly once; staging never held a broken
// image; and nobody, Sluice least of all, tried a non-fast-forward.
// Then someone moves staging by hand and the gate stops without touching it.
func TestDaemonRacesWithWriters(t *testing.T) {
	const (
		writers      = 3
		perWriter    = 12 // commits each: 36 in all
		brokenEvery  = 4  // every 4th commit of a writer breaks: 9 in all
		slots        = perWriter/brokenEvery + 1
		pollInterval = 50 * time.Millisecond
	)
	srv := gitserver.Start(t, gitserver.Options{})
	const name = "race"
	h := &hostileRepo{t: t, srv: srv, name: name, url: srv.CreateRepo(t, name)}
	bare := srv.RepoDir(name)
	serverGit(t, bare, "config", "core.logAllRefUpdates", "always")

	// Each writer owns a file of Deployments: slot 0 gets the good bumps,
	// and each broken bump has a slot of its own, so that reverting it
	// never conflicts with the writer's later commits.
	slot := func(w, s int) string { return fmt.Sprintf("w%d-s%d", w, s) }
	file := func(w int) string { return fmt.Sprintf("environments/staging/w%d.yaml", w) }
	h.work = srv.Clone(t, name)
	var resources []string
	env := &fakeEnv{}
	for w := range writers {
		var docs []string
		for s := range slots {
			docs = append(docs, deployment(slot(w, s), "v1"))
			if s > 0 {
				env.broken = append(env.broken, ":"+badTag(w, s))
			}
		}
		h.work.Write(t, file(w), strings.Join(docs, "---\n"))
		resources = append(resources, fmt.Sprintf("  - w%d.yaml\n", w))
	}
	h.work.Write(t, "environments/staging/kustomization.yaml", "resources:\n"+strings.Join(resources, ""))
	initial := h.work.Commit(t, "initial")
	if err := h.work.Push(t, "HEAD:refs/heads/main", "HEAD:refs/heads/staging"); err != nil {
		t.Fatal(err)
	}
	srv.InstallHook(t, name, "pre-receive", gitserver.ProtectBranches("main", "staging"))

	logs := &logCapture{}
	r := h.runner(env, logs)
	r.Gates[0].InitialBackoff, r.Gates[0].MaxBackoff = 10*time.Millisecond, 200*time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, pollInterval) }()
	stopDaemon := sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("the daemon did not stop within a minute of its context being cancelled")
		}
	})
	defer stopDaemon()

	start := time.Now()
	var (
		mu         sync.Mutex
		broken     = map[string]bool{} // every writer's commit -> breaks
		rejections atomic.Int64        // pushes refused because main moved
	)
	t.Run("writers", func(t *testing.T) {
		for w := range writers {
			t.Run(fmt.Sprint(w), func(t *testing.T) {
				t.Parallel()
				work := srv.Clone(t, name)
				next := 2
				for k := range perWriter {
					work.Pull(t)
					var msg string
					bad := k%brokenEvery == brokenEvery-1
					if bad {
						s := (k + 1) / brokenEvery
						setImage(t, work, file(w), slot(w, s), badTag(w, s))
						msg = fmt.Sprintf("writer %d: bump %s to %s (breaks)", w, slot(w, s), badTag(w, s))
					} else {
						setImage(t, work, file(w), slot(w, 0), fmt.Sprintf("v%d", next))
						msg = fmt.Sprintf("writer %d: bump %s to v%d", w, slot(w, 0), next)
						next++
					}
					work.Commit(t, msg)
					for attempt := 1; ; attempt++ {
						err := work.Push(t, "HEAD:refs/heads/main")
						if err == nil {
							break
						}
						if attempt == 50 {
							t.Fatalf("push still refused after %d attempts: %v", attempt, err)
						}
						rejections.Add(1)
						work.Pull(t) // rebase onto what the others (and Sluice) pushed
					}
					mu.Lock()
					broken[work.Git(t, "rev-parse", "HEAD")] = bad
					mu.Unlock()
				}
			})
		}
	})
	if t.Failed() {
		return
	}
	pushed := time.Since(start)

	// Drained: staging is main's tip, which has its verdict.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		main, staging := h.remote("rev-parse", "origin/main"), h.remote("rev-parse", "origin/staging")
		if main == staging && h.hasNote(main) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue not drained 3 minutes after the last push: main %s, staging %s; log:\n%s", main[:7], staging[:7], logs.text())
		}
		time.Sleep(200 * time.Millisecond)
	}
	drained := time.Since(start)

	order := strings.Fields(h.remote("rev-list", "--first-parent", "--reverse", initial+"..origin/main"))
	notes := h.notes()
	reverts := h.reverts()
	index := map[string]int{}
	for i, c := range order {
		index[c] = i
	}
	var nBroken int
	for c, bad := range broken {
		if _, ok := index[c]; !ok {
			t.Errorf("writer commit %s is not on main's first-parent history", c[:7])
		}
		if bad {
			nBroken++
		}
	}

	t.Run("every commit has its verdict, in first-parent order", func(t *testing.T) {
		var last time.Time
		for _, c := range order {
			rec, ok := notes[c]
			if !ok {
				t.Errorf("%s has no note", c[:7])
				continue
			}
			want := Passed
			if broken[c] {
				want = Failed
			}
			if Verdict(rec.Verdict) != want {
				t.Errorf("%s %q: verdict %s (%s), want %s", c[:7], h.remote("log", "-1", "--format=%s", c), rec.Verdict, rec.Reason, want)
			}
			if rec.Started.Before(last) {
				t.Errorf("%s was tested at %s, before the commit ahead of it (%s)", c[:7], rec.Started, last)
			}
			last = rec.Started
		}
		tested := env.testedCommits()
		for i := 1; i < len(tested); i++ {
			if index[tested[i]] < index[tested[i-1]] {
				t.Errorf("the cluster tested %s after %s, which comes later on main", tested[i][:7], tested[i-1][:7])
			}
		}
	})

	t.Run("every broken commit is reverted exactly once", func(t *testing.T) {
		for c, bad := range broken {
			if n := reverts[c]; bad && n != 1 {
				t.Errorf("broken %s reverted %d times", c[:7], n)
			} else if !bad && n != 0 {
				t.Errorf("good %s reverted %d times", c[:7], n)
			}
		}
		for c := range reverts {
			if _, ok := broken[c]; !ok {
				t.Errorf("a revert of %s, which no writer pushed", c)
			}
		}
	})

	var stagingValues []string
	t.Run("staging never held a broken image", func(t *testing.T) {
		stagingValues = strings.Fields(serverGit(t, bare, "reflog", "show", "--format=%H", "refs/heads/staging"))
		if len(stagingValues) < 2 {
			t.Fatalf("staging's reflog has %d entries; is core.logAllRefUpdates on?", len(stagingValues))
		}
		deploysBroken := func(v string) string {
			return serverGit(t, bare, "grep", "-h", "-e", "image: .*:bad-", v, "--", "environments/staging")
		}
		for c, bad := range broken {
			if bad && deploysBroken(c) == "" {
				t.Fatalf("control: the check finds no broken image in the broken commit %s", c[:7])
			}
		}
		for _, v := range stagingValues {
			if out := deploysBroken(v); out != "" {
				t.Errorf("staging was at %s, which deploys\n%s", v[:7], out)
			}
		}
	})

	t.Run("nobody tried a non-fast-forward", func(t *testing.T) {
		if got := srv.ProtectLog(t, name); got != nil {
			t.Errorf("the protection hook refused:\n%s", strings.Join(got, "\n"))
		}
	})

	redone := len(logs.find(slog.LevelDebug, "source moved while pushing a revert, redoing it"))
	t.Logf("%d writers pushed %d commits (%d breaking) in %s with %d pushes refused because main had moved; "+
		"Sluice pushed %d reverts (%d redone because main moved under them), tested %d candidates, "+
		"moved staging %d times; drained %s after the first push",
		writers, len(broken), nBroken, pushed.Round(time.Millisecond), rejections.Load(),
		len(order)-len(broken), redone, len(env.testedCommits()), len(stagingValues)-1, drained.Round(time.Millisecond))

	// Someone else fast-forwards staging to a commit of their own.
	other := srv.Clone(t, name)
	other.Git(t, "checkout", "-q", "-b", "hotfix", "origin/staging")
	other.Write(t, "HOTFIX", "applied by hand\n")
	hotfix := other.Commit(t, "hotfix straight on staging")
	if err := other.Push(t, "HEAD:refs/heads/staging"); err != nil {
		t.Fatal(err)
	}
	h.work.Pull(t)
	setImage(t, h.work, file(0), slot(0, 0), "v100")
	h.work.Commit(t, "bump w0-s0 to v100")
	if err := h.work.Push(t, "HEAD:refs/heads/main"); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(time.Minute)
	for len(logs.find(slog.LevelError, "gate stopped")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the gate did not stop within a minute of staging being moved; log:\n%s", logs.text())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(20 * pollInterval) // the daemon retries a stopped gate at every poll
	stopDaemon()
	stops := logs.find(slog.LevelError, "gate stopped")
	if len(stops) != 1 || !strings.Contains(stops[0].Attrs["reason"], "moved outside Sluice") {
		t.Errorf("gate stopped logged %d times, want once, saying staging was moved outside Sluice: %v", len(stops), stops)
	}
	if got := h.remote("rev-parse", "origin/staging"); got != hotfix {
		t.Errorf("staging = %s, want the hotfix %s left where its author put it", got[:7], hotfix[:7])
	}
	if got := srv.ProtectLog(t, name); got != nil {
		t.Errorf("the protection hook refused:\n%s", strings.Join(got, "\n"))
	}
	err := r.Drain(t.Context(), &r.Gates[0])
	var stopped *StoppedError
	if !errors.As(err, &stopped) || stopped.Gate != "staging" || !strings.Contains(err.Error(), "target branch staging was moved outside Sluice") {
		t.Errorf("Drain = %v, want a StoppedError saying staging was moved outside Sluice", err)
	}
	t.Logf("after staging was moved by hand: %v", err)
}

func badTag(w, s int) string { return fmt.Sprintf("bad-%d-%d", w, s) }

// setImage changes the image tag of Deployment name in the file at path,
// leaving every other line as it is.
func setImage(t *testing.T, w *gitserver.Work, path, name, tag string) {
	t.Helper()
	p := filepath.Join(w.Dir, filepath.FromSlash(path))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^(\s*image: example\.com/` + regexp.QuoteMeta(name) + `:).*$`)
	if !re.Match(b) {
		t.Fatalf("%s has no image of %s", path, name)
	}
	if err := os.WriteFile(p, re.ReplaceAll(b, []byte("${1}"+tag)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// serverGit runs git in the server's bare repository dir, as the server's
// administrator would, and returns its trimmed output.
func serverGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GIT_") }),
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 && args[0] == "grep" {
		return "" // no match
	}
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}
