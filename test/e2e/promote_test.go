package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/reconcile"
	"github.com/sluice-gitops/sluice/test/gitserver"
)

// devVersion writes one service's version file for shared-dev.
func devVersion(svc, tag string) (string, string) {
	p, content := version(svc, tag)
	return strings.Replace(p, "/staging/", "/shared-dev/", 1), strings.Replace(content, "in staging", "in shared-dev", 1)
}

// newPromoteScenario is the article's repository with a shared-dev gate
// that promotes its versions to the staging gate. shared-dev starts at a
// commit that runs A v2 and B v3, as staging does.
func newPromoteScenario(t *testing.T, promote string) (*scenario, string) {
	dev := "dev-" + randHex(3)
	s := newScenario(t, scenarioOptions{extraGate: "  - name: " + dev + "\n" +
		"    path: environments/shared-dev\n" +
		"    targetBranch: shared-dev\n" +
		"    timeouts: {apply: 30s, health: 60s}\n" +
		"    onFailure: {keepNamespace: 0s}\n" +
		"    retry: {initialBackoff: 1s, maxBackoff: 4s, onceAttempts: 5}\n" + promote})
	s.push("Platform", "shared-dev runs what staging runs", append(pair(devVersion("a", "v2")), pair(devVersion("b", "v3"))...)...)
	if err := s.work.Push(t, "HEAD:refs/heads/shared-dev"); err != nil {
		t.Fatal(err)
	}
	s.srv.InstallHook(t, s.repo, "pre-receive", gitserver.ProtectBranches("main", "staging", "shared-dev"))
	return s, dev
}

// newPromotingScenario is newPromoteScenario whose shared-dev gate
// promotes its versions to the staging gate (named at random).
func newPromotingScenario(t *testing.T) (*scenario, string) {
	s, dev := newPromoteScenario(t, "")
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = append(cfg, []byte("    promote: {to: "+s.gate+", paths: [\"versions/*.yaml\"]}\n")...)
	if err := os.WriteFile(s.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	return s, dev
}

// pushDevStory pushes the story's two shared-dev bumps: Berlin's A v3,
// which staging passes once promoted, and London's B v4, which fails
// staging's a-checks-b.
func pushDevStory(s *scenario) (a3, b4 string) {
	a3 = s.push("Berlin", "bump A to v3 in shared-dev", pair(devVersion("a", "v3"))...)
	b4 = s.push("London", "bump B to v4 in shared-dev", pair(devVersion("b", "v4"))...)
	return a3, b4
}

// promotions lists main's promotion commits: Sluice-Promoted-From values.
func (s *scenario) promotions() []string {
	s.t.Helper()
	return strings.Fields(s.git("log", "--format=%(trailers:key=Sluice-Promoted-From,valueonly)", "main"))
}

// TestPromotionArticleStory is the article's story one level up: Berlin's
// A v3 passes shared-dev and is promoted to staging, where it passes;
// London's B v4 passes shared-dev (which has no contract tests), is
// promoted, fails staging's a-checks-b and is reverted in staging's folder
// only: shared-dev keeps it. Running again, or `sluice promote` by hand,
// promotes nothing twice.
func TestPromotionArticleStory(t *testing.T) {
	s, dev := newPromotingScenario(t)
	a3, b4 := pushDevStory(s)

	r := s.runOnce()
	if r.code != 0 {
		t.Fatalf("sluice run --once exited %d", r.code)
	}
	for _, want := range []string{"msg=promoted", "Promote a v3 from " + dev + " to " + s.gate, "Promote b v4 from " + dev + " to " + s.gate} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the log does not say %q", want)
		}
	}

	// One promotion each, signed by Sluice, with the trailers.
	if got := s.promotions(); !slices.Equal(got, []string{b4, a3}) {
		t.Fatalf("promotions on main from %v, want b4 then a3 (newest first) %v", got, []string{b4, a3})
	}
	var promoA, promoB string
	for _, h := range strings.Fields(s.git("log", "--format=%H", "main")) {
		tr := gitrepo.ParseTrailers(s.git("log", "-1", "--format=%B", h))
		switch tr.Get("Sluice-Promoted-From") {
		case a3:
			promoA = h
		case b4:
			promoB = h
		default:
			continue
		}
		if tr.Get("Sluice-Gate") != dev || !strings.HasPrefix(tr.Get("Sluice-Signature"), "hmac-sha256:") {
			t.Errorf("promotion %s has trailers %v", h[:7], tr)
		}
	}
	// The dev gate passed both; staging passed A's promotion and failed B's.
	for sha, verdict := range map[string]string{a3: "passed", b4: "passed"} {
		if rec := s.record(sha, dev); rec.Verdict != verdict {
			t.Errorf("gate %s on %s: %q, want %s", dev, sha[:7], rec.Verdict, verdict)
		}
	}
	s.mustNote(promoA, "passed")
	failed := s.mustNote(promoB, "failed")
	if !strings.Contains(failed.Reason, "a-checks-b") {
		t.Errorf("B's promotion failed for another reason:\n%s", failed.Reason)
	}
	// Reverted on staging only: staging runs A v3 and B v3, shared-dev keeps B v4.
	main := s.tip("main")
	if msg := s.git("log", "-1", "--format=%B", main); gitrepo.ParseTrailers(msg).Get("Sluice-Rejected") != promoB {
		t.Errorf("main's tip %s is not the revert of B's promotion:\n%s", main[:7], msg)
	}
	for file, want := range map[string]string{
		"environments/staging/versions/a.yaml":    "a:v3",
		"environments/staging/versions/b.yaml":    "b:v3",
		"environments/shared-dev/versions/b.yaml": "b:v4",
	} {
		if got := s.file("main", file); !strings.Contains(got, want) {
			t.Errorf("main's %s:\n%s\nwant %s", file, got, want)
		}
	}
	if got := s.tip("staging"); got != main {
		t.Errorf("staging = %s, want the revert %s", got[:7], main[:7])
	}
	for _, h := range s.history("staging") {
		if strings.Contains(s.file(h, "environments/staging/versions/b.yaml"), "b:v4") {
			t.Errorf("staging pointed at %s, whose tree holds B v4", h[:7])
		}
	}

	// A restart: run --once twice more, and promote by hand; nothing is
	// promoted again, not even B's rejected promotion.
	before := s.refs()
	for i := range 2 {
		if r := s.runOnce(); r.code != 0 || strings.Contains(r.stderr, "msg=promoted") {
			t.Fatalf("run %d exited %d or promoted again:\n%s", i+2, r.code, r.stderr)
		}
	}
	p := s.sluice(t.Context(), nil, "promote", "--from", dev, "--to", s.gate, "--kubeconfig", s.cluster.Kubeconfig, "a", "b")
	if p.code != 0 || strings.Count(p.stdout, "already promoted") != 2 {
		t.Errorf("promote a b by hand: exit %d, stdout:\n%s", p.code, p.stdout)
	}
	if after := s.refs(); after != before {
		t.Errorf("refs changed after the queue drained:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if got := s.promotions(); len(got) != 2 {
		t.Errorf("%d promotions on main, want 2", len(got))
	}
}

// record is gate's record of a commit on the server.
func (s *scenario) record(sha, gate string) gitrepo.Record {
	s.t.Helper()
	out, err := s.tryGit("notes", "--ref=sluice", "show", sha)
	if err != nil {
		s.t.Fatalf("no note on %s: %v", sha[:7], err)
	}
	n, err := gitrepo.DecodeNote([]byte(out))
	if err != nil {
		s.t.Fatal(err)
	}
	rec, _ := n.Get(gate)
	return rec
}

// TestPromoteBadInput: a glob that matches nothing, a `to` naming no gate,
// and --from not promoting to --to are clear errors, and nothing is written.
func TestPromoteBadInput(t *testing.T) {
	s, dev := newPromoteScenario(t, "")
	base, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	s.push("Berlin", "bump A to v3 in shared-dev", pair(devVersion("a", "v3"))...)
	before := s.refs()
	for _, tc := range []struct {
		name, promote string
		args          []string
		code          int
		want          string
	}{
		{"a glob matching nothing", "    promote: {to: " + "STG" + ", paths: [\"versions/*.json\"]}\n", []string{"run", "--once"}, 1,
			`gates[1].promote.paths[0]: "versions/*.json" matches no file under environments/shared-dev`},
		{"to naming no gate", "    promote: {to: prod, paths: [\"versions/*.yaml\"]}\n", []string{"run", "--once"}, 1,
			`gates[1].promote.to: "prod" names no gate`},
		{"promote: a glob matching nothing", "    promote: {to: STG, paths: [\"versions/*.json\"]}\n", []string{"promote", "--from", dev, "--to", "STG", "a"}, 1,
			`gates[1].promote.paths[0]: "versions/*.json" matches no file`},
		{"--from not promoting to --to", "    promote: {to: STG, paths: [\"versions/*.yaml\"]}\n", []string{"promote", "--from", "STG", "--to", dev, "a"}, 2,
			"does not promote to"},
		{"no service", "    promote: {to: STG, paths: [\"versions/*.yaml\"]}\n", []string{"promote", "--from", dev, "--to", "STG"}, 2,
			"name at least one SERVICE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := string(base) + strings.ReplaceAll(tc.promote, "STG", s.gate)
			if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			args := tc.args
			for i, a := range args {
				args[i] = strings.ReplaceAll(a, "STG", s.gate)
			}
			if args[0] == "promote" {
				args = append(args, "--kubeconfig", s.cluster.Kubeconfig)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			r := s.sluice(ctx, nil, args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "sluice.yaml") && tc.code == 1 {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and %q naming the file", r.code, r.stderr, tc.code, tc.want)
			}
			if after := s.refs(); after != before {
				t.Errorf("refs changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// watchPromotionPushes installs a post-receive hook that logs each push to
// main carrying promotion commits, one line per push: the new tip, then the
// Sluice-Promoted-From values of the commits it brought. While the file
// hold exists, the hook then waits: main is already updated on the server
// (post-receive runs after the update) but the pusher still waits for its
// answer, so a pusher killed meanwhile never learns its push landed.
func (s *scenario) watchPromotionPushes() (pushes func() []string, hold string) {
	s.t.Helper()
	log := filepath.Join(s.dir, "promotion-pushes")
	hold = filepath.Join(s.dir, "hold-promotion-push")
	s.t.Cleanup(func() { os.Remove(hold) }) // never leave a hook waiting
	s.srv.InstallHook(s.t, s.repo, "post-receive", `#!/bin/sh
while read -r old new ref; do
	[ "$ref" = refs/heads/main ] || continue
	case "$old" in
	*[!0]*) range="$old..$new" ;;
	*) range="$new" ;;
	esac
	from=$(git log --format='%(trailers:key=`+gitrepo.TrailerPromotedFrom+`,valueonly)' "$range" | tr -s '\n' ' ')
	case "$from" in
	*[!\ ]*) ;;
	*) continue ;;
	esac
	echo "$new $from" >>'`+log+`'
	i=0
	while [ -e '`+hold+`' ] && [ $i -lt 1800 ]; do sleep 0.1; i=$((i+1)); done
done >/dev/null 2>&1
exit 0
`)
	return func() []string {
		b := s.readLog(log)
		if b == "" {
			return nil
		}
		return strings.Split(strings.TrimSuffix(b, "\n"), "\n")
	}, hold
}

// promotedPaths counts main's promotion commits per Sluice-Promoted-Path.
func (s *scenario) promotedPaths() map[string]int {
	s.t.Helper()
	n := map[string]int{}
	for _, p := range strings.Fields(s.git("log", "--format=%(trailers:key="+gitrepo.TrailerPromotedPath+",valueonly)", "main")) {
		n[p]++
	}
	return n
}

// promoteState is what the promotion story leaves in Git, by content and
// subject rather than hash and with the random gate names replaced by DEV
// and STAGING, so that two repositories that ran it compare equal.
type promoteState struct {
	trees    map[string]string // branch -> tree
	verdicts map[string]string // "<subject> @<gate>" -> verdict, for every commit on main
	reverts  []string          // per revert on main: the rejected commit's subject
	promoted map[string]int    // per promoted file, the promotion commits on main
}

func (s *scenario) promoteState(dev string) promoteState {
	s.t.Helper()
	norm := strings.NewReplacer(dev, "DEV", s.gate, "STAGING").Replace
	subject := func(h string) string { return norm(strings.TrimSpace(s.git("log", "-1", "--format=%s", h))) }
	st := promoteState{trees: map[string]string{}, verdicts: map[string]string{}, promoted: s.promotedPaths()}
	for _, b := range []string{"main", "staging", "shared-dev"} {
		st.trees[b] = s.treeOf(b)
	}
	for _, h := range strings.Fields(s.git("rev-list", "main")) {
		var n gitrepo.Note
		if out, err := s.tryGit("notes", "--ref=sluice", "show", h); err == nil {
			if n, err = gitrepo.DecodeNote([]byte(out)); err != nil {
				s.t.Fatalf("note of %s does not decode: %v", h[:7], err)
			}
		}
		for gate, name := range map[string]string{dev: "DEV", s.gate: "STAGING"} {
			v := "none"
			if rec, ok := n.Get(gate); ok {
				v = rec.Verdict
			}
			st.verdicts[subject(h)+" @"+name] = v
		}
	}
	for _, rejected := range s.rejectedByReverts() {
		st.reverts = append(st.reverts, subject(rejected))
	}
	sort.Strings(st.reverts)
	return st
}

func (p promoteState) String() string {
	vs := verdictLines(p.verdicts)
	return fmt.Sprintf("trees %v\nreverts of %q\npromotions per file %v\nverdicts:\n  %s", p.trees, p.reverts, p.promoted, strings.Join(vs, "\n  "))
}

func (p promoteState) equal(q promoteState) bool {
	return maps.Equal(p.trees, q.trees) && maps.Equal(p.verdicts, q.verdicts) &&
		slices.Equal(p.reverts, q.reverts) && maps.Equal(p.promoted, q.promoted)
}

// TestPromotionCrashPromotesNothingTwice kills the real sluice with SIGKILL
// in the middle of a promotion, restarts it, and checks that nothing is
// promoted twice: once when the promotions' push has landed on the server
// but sluice never got its answer (a post-receive hook holds the answer),
// and once right after the push returned, before staging tests them (the
// "promoted" crash point). The restarted run ends as an uninterrupted run
// of the same story: the same branches' trees and verdicts, one promotion
// commit per file, B's promotion reverted once, no push promoting a change
// twice; and `sluice promote` afterwards changes no ref.
func TestPromotionCrashPromotesNothingTwice(t *testing.T) {
	ref, refDev := newPromotingScenario(t)
	pushDevStory(ref)
	if r := ref.runOnce(); r.code != 0 {
		t.Fatalf("uninterrupted sluice run --once exited %d", r.code)
	}
	want := ref.promoteState(refDev)
	if want.promoted["environments/shared-dev/versions/a.yaml"] != 1 || want.promoted["environments/shared-dev/versions/b.yaml"] != 1 || len(want.reverts) != 1 {
		t.Fatalf("the uninterrupted run is not the story:\n%s", want)
	}
	t.Logf("uninterrupted:\n%s", want)

	for _, tc := range []struct {
		name    string
		crashAt string // a crash point (reconcile.EnvCrashAt), or "" to kill while the hook holds the push's answer
		learned bool   // whether sluice logged the promotions before it was killed
	}{
		{name: "push landed, answer lost"},
		{name: "pushed, staging not drained", crashAt: "promoted:1", learned: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, dev := newPromotingScenario(t)
			pushes, hold := s.watchPromotionPushes()
			a3, b4 := pushDevStory(s)

			var crashed result
			if tc.crashAt == "" {
				if err := os.WriteFile(hold, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				crashed = s.runOnceKilled(func() bool { return len(pushes()) > 0 })
				if err := os.Remove(hold); err != nil {
					t.Fatal(err)
				}
			} else {
				crashed = s.runOnce(reconcile.EnvCrashAt + "=" + tc.crashAt)
			}
			if crashed.code != -1 {
				t.Fatalf("sluice exited %d, want it killed", crashed.code)
			}
			if got := strings.Contains(crashed.stderr, "msg=promoted"); got != tc.learned {
				t.Fatalf("sluice logged the promotions before it was killed: %t, want %t", got, tc.learned)
			}
			// Killed with both promotions on the server, untested by staging.
			if got := s.promotions(); !slices.Equal(got, []string{b4, a3}) {
				t.Fatalf("at the crash, promotions on main from %v, want b4 then a3 %v", got, []string{b4, a3})
			}
			if len(s.revertsOf("")) != 0 {
				t.Fatalf("staging reverted something before the crash")
			}

			// The restart finds the promotions by their signed trailers: it
			// neither promotes again nor takes them (or the revert of B's)
			// for someone's edit of staging's files.
			for i := range 2 {
				r := s.runOnce()
				if r.code != 0 {
					t.Fatalf("restart %d exited %d", i+1, r.code)
				}
				for _, bad := range []string{"msg=promoted", "promotion conflict"} {
					if strings.Contains(r.stderr, bad) {
						t.Errorf("restart %d logged %q", i+1, bad)
					}
				}
			}
			got := s.promoteState(dev)
			if !got.equal(want) {
				t.Errorf("after the crash:\n%s\nuninterrupted:\n%s", got, want)
			}
			for file, n := range got.promoted {
				if n != 1 {
					t.Errorf("%s promoted %d times, want once", file, n)
				}
			}
			seen := map[string]int{}
			for _, p := range pushes() {
				for _, from := range strings.Fields(p)[1:] {
					seen[from]++
				}
			}
			if seen[a3] != 1 || seen[b4] != 1 || len(seen) != 2 {
				t.Errorf("pushes to main carrying promotions: %q, want a3 and b4 each in one", pushes())
			}
			var promoB string
			for _, h := range strings.Fields(s.git("rev-list", "main")) {
				if gitrepo.ParseTrailers(s.git("log", "-1", "--format=%B", h)).Get(gitrepo.TrailerPromotedFrom) == b4 {
					promoB = h
				}
			}
			if n := len(s.revertsOf(promoB)); promoB == "" || n != 1 {
				t.Errorf("B's promotion %.7s reverted %d times, want once", promoB, n)
			}
			for _, h := range s.history("staging") {
				if strings.Contains(s.file(h, "environments/staging/versions/b.yaml"), "b:v4") {
					t.Errorf("staging pointed at %s, whose tree holds B v4", h[:7])
				}
			}

			before := s.refs()
			p := s.sluice(t.Context(), nil, "promote", "--from", dev, "--to", s.gate, "--kubeconfig", s.cluster.Kubeconfig, "a", "b")
			if p.code != 0 || strings.Count(p.stdout, "already promoted") != 2 {
				t.Errorf("promote a b by hand: exit %d, stdout:\n%s", p.code, p.stdout)
			}
			if after := s.refs(); after != before {
				t.Errorf("sluice promote changed refs:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}
