package reconcile

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/test/gitserver"
)

// BenchmarkDrainQueue measures what Sluice itself spends per queued commit,
// the cluster left out (fakeEnv): fetch, candidate trees with reverts,
// render, digest, notes, fast-forwards and revert pushes against the real
// Git server on loopback. The queue holds 40 commits for one gate over 15
// services: 30 version bumps, 5 README edits and 5 bumps that fail and are
// reverted (each revert is queued and drained too). A failing bump is the
// only change to its service, so its revert never conflicts.
//
//	go test -run '^$' -bench DrainQueue -benchtime 3x ./reconcile
func BenchmarkDrainQueue(b *testing.B) {
	const services, bumps, docs, broken = 10, 30, 5, 5
	queued := bumps + docs + broken
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		srv := gitserver.Start(b, gitserver.Options{})
		url := srv.CreateRepo(b, "desired")
		w := srv.Clone(b, "desired")
		var k strings.Builder
		k.WriteString("resources:\n")
		for s := range services + broken {
			name := fmt.Sprintf("svc%d", s)
			k.WriteString("  - " + name + ".yaml\n")
			w.Write(b, "env/"+name+".yaml", deployment(name, "v1"))
		}
		w.Write(b, "env/kustomization.yaml", k.String())
		w.Commit(b, "initial")
		if err := w.Push(b, "HEAD:refs/heads/main", "HEAD:refs/heads/staging"); err != nil {
			b.Fatal(err)
		}
		for n := range queued {
			name := fmt.Sprintf("svc%d", n%services)
			switch {
			case n%8 == 3:
				w.Write(b, "README.md", fmt.Sprintf("notes %d\n", n))
			case n%8 == 6:
				name = fmt.Sprintf("svc%d", services+n/8)
				w.Write(b, "env/"+name+".yaml", deployment(name, "broken"))
			default:
				w.Write(b, "env/"+name+".yaml", deployment(name, fmt.Sprintf("v%d", n+2)))
			}
			w.Commit(b, fmt.Sprintf("change %d", n))
		}
		if err := w.Push(b, "HEAD:refs/heads/main"); err != nil {
			b.Fatal(err)
		}
		repo, err := gitrepo.Open(context.Background(), gitrepo.Options{URL: url})
		if err != nil {
			b.Fatal(err)
		}
		env := &fakeEnv{broken: []string{":broken"}}
		r := &Runner{
			Repo: repo, Source: "main", Env: env,
			Gates: []Gate{{Name: "staging", Path: "env", Target: "staging", Revert: true,
				InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond, OnceAttempts: 1}},
			Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Key: testKey,
		}
		b.StartTimer()
		start := time.Now()
		if err := r.RunOnce(context.Background()); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		b.StopTimer()
		if got := env.calls(); got != bumps+broken {
			b.Fatalf("%d candidates ran on the cluster, want %d", got, bumps+broken)
		}
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N*queued), "ms/commit")
}

// BenchmarkDrainDocCommits measures the drain of 100 documentation commits
// (each changes only README.md) on a gate of 100 services (200 objects),
// against the real Git server with the stand-in cluster: the first commit
// is rendered and tested, every later one renders nothing new.
//
//	go test -run '^$' -bench DrainDocCommits -benchtime 1x ./reconcile
func BenchmarkDrainDocCommits(b *testing.B) {
	const docs = 100
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		w, url := serviceRepoOnServer(b, 100)
		if err := w.Push(b, "HEAD:refs/heads/staging"); err != nil {
			b.Fatal(err)
		}
		for n := range docs {
			w.Write(b, "README.md", fmt.Sprintf("# desired state\n\nedit %d\n", n))
			w.Commit(b, fmt.Sprintf("docs %d", n))
		}
		if err := w.Push(b, "HEAD:refs/heads/main"); err != nil {
			b.Fatal(err)
		}
		repo, err := gitrepo.Open(context.Background(), gitrepo.Options{URL: url})
		if err != nil {
			b.Fatal(err)
		}
		env := &fakeEnv{}
		r := &Runner{
			Repo: repo, Source: "main", Env: env,
			Gates: []Gate{{Name: "staging", Path: "environments/staging", Target: "staging", Revert: true,
				InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond, OnceAttempts: 1}},
			Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Key: testKey,
		}
		b.StartTimer()
		start := time.Now()
		if err := r.RunOnce(context.Background()); err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		total += took
		b.StopTimer()
		if got := env.calls(); got != 1 {
			b.Fatalf("%d candidates ran on the cluster, want 1", got)
		}
		b.Logf("drained %d documentation commits in %s", docs, took.Round(time.Millisecond))
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/drain")
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N*docs), "ms/commit")
}
