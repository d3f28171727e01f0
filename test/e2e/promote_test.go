package e2e

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gitops/sluice/gitrepo"
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
	s, dev := newPromoteScenario(t, "")
	// The staging gate is named at random: promote to it.
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = append(cfg, []byte("    promote: {to: "+s.gate+", paths: [\"versions/*.yaml\"]}\n")...)
	if err := os.WriteFile(s.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}

	a3 := s.push("Berlin", "bump A to v3 in shared-dev", pair(devVersion("a", "v3"))...)
	b4 := s.push("London", "bump B to v4 in shared-dev", pair(devVersion("b", "v4"))...)

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
