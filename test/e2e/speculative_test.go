package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/reconcile"
	"github.com/sluice-gitops/sluice/test/cluster"
)

// speculativeKeys is the gate YAML that makes a gate test a window of up to
// max candidates at once.
func speculativeKeys(min, max int) string {
	return fmt.Sprintf("    strategy: speculative\n    parallelism: {min: %d, max: %d}\n", min, max)
}

// recordRefValues installs an update hook on the scenario's repository that
// appends every value branch is given to a file, and returns a function
// that reads them back, oldest first. The hook runs for every ref a push
// updates, after the pre-receive hook (branch protection) accepted it.
func (s *scenario) recordRefValues(branch string) func() []string {
	s.t.Helper()
	log := filepath.Join(s.dir, branch+".values")
	s.srv.InstallHook(s.t, s.repo, "update", "#!/bin/sh\n"+
		"# $1 ref, $2 old value, $3 new value\n"+
		"if [ \"$1\" = refs/heads/"+branch+" ]; then echo \"$3\" >> '"+log+"'; fi\n"+
		"exit 0\n")
	return func() []string { return strings.Fields(s.readLog(log)) }
}

// readLog is what a hook wrote to file so far ("" before its first line).
func (s *scenario) readLog(file string) string {
	s.t.Helper()
	b, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		s.t.Fatal(err)
	}
	return string(b)
}

// treeOf is the tree of a commit on the server.
func (s *scenario) treeOf(rev string) string {
	s.t.Helper()
	return strings.TrimSpace(s.git("rev-parse", rev+"^{tree}"))
}

// revertsOf lists the commits on main whose Sluice-Rejected trailer names
// rejected ("" for any), newest first.
func (s *scenario) revertsOf(rejected string) []string {
	s.t.Helper()
	var out []string
	for _, h := range strings.Fields(s.git("rev-list", "main")) {
		got := gitrepo.ParseTrailers(s.git("log", "-1", "--format=%B", h)).Get(gitrepo.TrailerRejected)
		if got != "" && (rejected == "" || got == rejected) {
			out = append(out, h)
		}
	}
	return out
}

// TestSpeculativeBrokenCommitInTheMiddle drains a queue of five commits with
// a window of five, the third of which (Z v5) a smoke test rejects. The two
// candidates behind it hold Z v5 too; their smoke test takes a minute, and
// Z v5's own fails only once both are running it, so they are in the
// middle of their test when Z v5's verdict makes them stale. They must be
// cancelled (their test killed, their namespaces removed), tested again
// without Z v5 and pass; Z v5 is reverted exactly once; and every value the
// staging branch took on the Git server (an update hook records them) is
// one that one-at-a-time gating gives staging, none holding Z v5.
func TestSpeculativeBrokenCommitInTheMiddle(t *testing.T) {
	tools, err := cluster.ToolsDir("")
	if err != nil {
		t.Fatal(err)
	}
	smoke := filepath.Join(t.TempDir(), "smoke.sh")
	smokeLog := smoke + ".log"
	s := newScenario(t, scenarioOptions{extraGate: speculativeKeys(1, 5) +
		"    tests:\n      commands:\n        - name: smoke\n          command: [/bin/sh, " + smoke + "]\n          timeout: 3m\n"})
	staging := s.recordRefValues("staging")

	a3 := s.push("Berlin", "bump A to v3", pair(version("a", "v3"))...)
	z1 := s.push("New York", "bump Z to v1", pair(version("z", "v1"))...)
	z5 := s.push("New York", "bump Z to v5", pair(version("z", "v5"))...)
	a4 := s.push("Berlin", "bump A to v4", pair(version("a", "v4"))...)
	b2 := s.push("London", "bump B to v2", pair(version("b", "v2"))...)

	// The smoke test logs "start", "end" or "pass" with the commit and the
	// namespace. A candidate holding Z v5 fails; Z v5's own fails once two
	// others holding it have started (or after a minute), the others only
	// after a minute, unless they are killed first.
	err = os.WriteFile(smoke, []byte(`#!/bin/sh
log='`+smokeLog+`'
images=$('`+filepath.Join(tools, "kubectl")+`' --kubeconfig "$KUBECONFIG" get deployments -n "$SLUICE_NAMESPACE" -o jsonpath='{..image}') || exit 2
case "$images" in
*z:v5*)
	if [ "$SLUICE_COMMIT" = `+z5+` ]; then
		i=0
		while [ "$(cat "$log" 2>/dev/null | grep -c '^start ')" -lt 2 ] && [ $i -lt 120 ]; do sleep 0.5; i=$((i+1)); done
		echo "end $SLUICE_COMMIT $SLUICE_NAMESPACE" >> "$log"
		echo "smoke: Z v5 answers 500"; exit 1
	fi
	echo "start $SLUICE_COMMIT $SLUICE_NAMESPACE" >> "$log"
	sleep 60 >/dev/null 2>&1
	echo "end $SLUICE_COMMIT $SLUICE_NAMESPACE" >> "$log"
	echo "smoke: Z v5 answers 500"; exit 1;;
esac
echo "pass $SLUICE_COMMIT $SLUICE_NAMESPACE" >> "$log"
`), 0o755)
	if err != nil {
		t.Fatal(err)
	}

	r := s.runOnce()
	if r.code != 0 {
		t.Fatalf("sluice run --once exited %d", r.code)
	}
	logged, err := os.ReadFile(smokeLog)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("smoke log:\n%s", logged)

	// Verdicts: one-at-a-time gating's, the commits behind Z v5 tested
	// without it.
	s.mustNote(a3, "passed")
	s.mustNote(z1, "passed")
	failed := s.mustNote(z5, "failed")
	if !strings.Contains(failed.Reason, "Z v5 answers 500") {
		t.Errorf("reason of z5 does not give the smoke test's output:\n%s", failed.Reason)
	}
	for _, h := range []string{a4, b2} {
		rec := s.mustNote(h, "passed")
		if !slices.Contains(hashes(rec.Reverted), z5) {
			t.Errorf("%s passed with %v reverted, want z5 %s among them", h[:7], hashes(rec.Reverted), z5[:7])
		}
	}

	// Exactly one revert, of Z v5, at the tip of main.
	reverts := s.revertsOf("")
	if len(reverts) != 1 || s.revertsOf(z5) == nil {
		t.Fatalf("reverts on main: %v, want exactly one, of z5 %s", reverts, z5[:7])
	}
	revert := reverts[0]
	if got := s.tip("main"); got != revert || failed.RevertCommit.String() != revert {
		t.Errorf("main = %s, z5's note names revert %s, want both %s", got[:7], failed.RevertCommit, revert[:7])
	}
	s.mustNote(revert, "passed")

	// The candidates behind Z v5 were stopped in the middle of their test:
	// started, never ended, and their namespaces are gone.
	var cancelled []string
	lines := strings.Split(strings.TrimSpace(string(logged)), "\n")
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 3 || f[0] != "start" {
			continue
		}
		if slices.Contains(lines, "end "+f[1]+" "+f[2]) {
			t.Errorf("the stale candidate of %s in %s ran to its end: it was not cancelled", f[1][:7], f[2])
			continue
		}
		cancelled = append(cancelled, f[1])
		ns, err := s.kube.CoreV1().Namespaces().Get(context.Background(), f[2], metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			t.Fatal(err)
		case ns.DeletionTimestamp == nil:
			t.Errorf("namespace %s of the cancelled candidate of %s is still there", f[2], f[1][:7])
		}
	}
	sort.Strings(cancelled)
	want := []string{a4, b2}
	sort.Strings(want)
	if !slices.Equal(cancelled, want) {
		t.Errorf("cancelled candidates of %v, want a4 and b2 %v", cancelled, want)
	}
	// And each was tested again, without Z v5, in another namespace.
	for _, h := range []string{a4, b2} {
		retested := false
		for _, l := range lines {
			if strings.HasPrefix(l, "pass "+h+" ") {
				retested = true
			}
		}
		if !retested {
			t.Errorf("%s was not tested again without z5", h[:7])
		}
	}

	// Every value staging took is one one-at-a-time gating gives it (a3,
	// z1, then the revert: a4 and b2 hold Z v5 until it), in that order,
	// ending at the revert, and none holds Z v5.
	serial := []string{a3, z1, revert}
	values := staging()
	if len(values) == 0 || values[len(values)-1] != revert {
		t.Errorf("staging took %v, want it to end at the revert %s", values, revert[:7])
	}
	last := -1
	for _, v := range values {
		if strings.Contains(s.file(v, "environments/staging/versions/z.yaml"), "z:v5") {
			t.Errorf("staging held %s, whose tree holds Z v5", v[:7])
		}
		i := slices.IndexFunc(serial, func(c string) bool { return s.treeOf(c) == s.treeOf(v) })
		if i < 0 {
			t.Errorf("staging held %s, a tree one-at-a-time gating never gives it", v[:7])
		} else if i <= last {
			t.Errorf("staging went back to the tree of %s", serial[i][:7])
		}
		last = i
	}
	if log := s.srv.ProtectLog(t, s.repo); log != nil {
		t.Errorf("branch protection refused pushes: %q", log)
	}
}

// TestSpeculativeTwoGatesDrainTogether is TestTwoGatesDrainTogether with
// both gates speculative: the same verdicts, reverts and branches, and the
// same skips: shared-dev's candidates of a3 and b4 start at once and render
// the same objects there, and b4's waits for a3's test and passes without
// a namespace, as one-at-a-time gating does (reconcile's digestCache).
func TestSpeculativeTwoGatesDrainTogether(t *testing.T) {
	s, _, b4 := drainTwoGates(t, speculativeKeys(1, 4), true)
	// b4 was tested next to a3, before a3's verdict: speculation happened.
	if rec := s.mustNote(b4, "failed"); !strings.Contains(rec.Reason, "speculatively") {
		t.Errorf("b4 was not judged speculatively:\n%s", rec.Reason)
	}
}

// finalState is what a drained queue leaves in Git, by content and subject
// rather than hash, so that two repositories that drained the same queue
// compare equal.
type finalState struct {
	staging, main string            // tip trees
	verdicts      map[string]string // commit subject -> verdict of the gate
	reverts       []string          // for each revert on main: the rejected commit's subject
}

func (s *scenario) finalState() finalState {
	s.t.Helper()
	f := finalState{staging: s.treeOf("staging"), main: s.treeOf("main"), verdicts: map[string]string{}}
	for _, h := range strings.Fields(s.git("rev-list", "--first-parent", "main")) {
		subject := strings.TrimSpace(s.git("log", "-1", "--format=%s", h))
		if subject == "Initial desired state" {
			continue
		}
		rec, ok := s.note(h)
		f.verdicts[subject] = "none"
		if ok {
			f.verdicts[subject] = rec.Verdict
		}
	}
	for _, rejected := range s.rejectedByReverts() {
		f.reverts = append(f.reverts, strings.TrimSpace(s.git("log", "-1", "--format=%s", rejected)))
	}
	sort.Strings(f.reverts)
	return f
}

// rejectedByReverts lists the commit each revert on main rejects (its
// Sluice-Rejected trailer), in revertsOf's order.
func (s *scenario) rejectedByReverts() []string {
	s.t.Helper()
	var out []string
	for _, h := range s.revertsOf("") {
		out = append(out, gitrepo.ParseTrailers(s.git("log", "-1", "--format=%B", h)).Get(gitrepo.TrailerRejected))
	}
	return out
}

// verdictLines is m as sorted "key: value" lines.
func verdictLines(m map[string]string) []string {
	var vs []string
	for k, v := range m {
		vs = append(vs, k+": "+v)
	}
	sort.Strings(vs)
	return vs
}

func (f finalState) String() string {
	vs := verdictLines(f.verdicts)
	return fmt.Sprintf("staging tree %.10s, main tree %.10s, reverts of %q, verdicts %q", f.staging, f.main, f.reverts, vs)
}

func (f finalState) equal(g finalState) bool {
	if f.staging != g.staging || f.main != g.main || !slices.Equal(f.reverts, g.reverts) || len(f.verdicts) != len(g.verdicts) {
		return false
	}
	for k, v := range f.verdicts {
		if g.verdicts[k] != v {
			return false
		}
	}
	return true
}

// crashQueue pushes the queue of the crash test: B v4 breaks A's contract
// test, with two good commits before it and two after.
func crashQueue(s *scenario) (b4 string) {
	s.push("Berlin", "bump A to v3", pair(version("a", "v3"))...)
	s.push("New York", "bump Z to v1", pair(version("z", "v1"))...)
	b4 = s.push("London", "bump B to v4", pair(version("b", "v4"))...)
	s.push("Berlin", "bump A to v4", pair(version("a", "v4"))...)
	s.push("New York", "bump Z to v2", pair(version("z", "v2"))...)
	return b4
}

// runOnceKilled runs `sluice run --once` and kills it with SIGKILL as soon
// as kill says so; it fails the test if sluice ends first.
func (s *scenario) runOnceKilled(kill func() bool) result {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	args := []string{"run", "--once", "--config", s.config, "--kubeconfig", s.cluster.Kubeconfig, "--progress", "always"}
	cmd := exec.CommandContext(ctx, sluiceBin, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	killed := false
poll:
	for {
		select {
		case err = <-done:
			break poll
		case <-time.After(100 * time.Millisecond):
		}
		if !killed && kill() {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			killed = true
		}
	}
	r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	}
	s.t.Logf("sluice run --once, killed %t (exit %d, %s)\n--- stdout\n%s--- stderr\n%s", killed, r.code, r.took.Round(time.Millisecond), r.stdout, r.stderr)
	if !killed {
		s.t.Fatalf("sluice ended (exit %d) before it was to be killed", r.code)
	}
	return r
}

// TestSpeculativeCrashConverges kills sluice with SIGKILL in the middle of
// a speculative window (several candidates under test, or at a step of
// the planner's loop), restarts it, and checks the queue ends as an
// uninterrupted run of the same queue ends: the same staging and main
// trees, the same verdicts, B v4 reverted exactly once, staging never
// holding it, no namespace left.
func TestSpeculativeCrashConverges(t *testing.T) {
	// Each candidate's test lasts two seconds, so that the candidates of a
	// window overlap long enough to be seen (and killed) together even on
	// a loaded machine, where a run without a test is over in a blink.
	keys := speculativeKeys(1, 4) +
		"    tests:\n      commands:\n        - name: settle\n          command: [/bin/sleep, \"2\"]\n          timeout: 1m\n"
	ref := newScenario(t, scenarioOptions{extraGate: keys})
	crashQueue(ref)
	if r := ref.runOnce(); r.code != 0 {
		t.Fatalf("uninterrupted sluice run --once exited %d", r.code)
	}
	want := ref.finalState()
	if len(want.reverts) != 1 {
		t.Fatalf("the uninterrupted run reverted %q, want B v4 once", want.reverts)
	}
	t.Logf("uninterrupted: %s", want)

	tests := []struct {
		name    string
		crashAt string                 // a crash point of reconcile (EnvCrashAt)
		kill    func(s *scenario) bool // or: kill when this says so
	}{
		{
			// Two candidates' namespaces at once: both under test.
			name: "two candidates under test",
			kill: func(s *scenario) bool { return len(s.sluiceNamespaces()) >= 2 },
		},
		{name: "third candidate applied", crashAt: "applied:3"},
		{name: "revert pushed, no note yet", crashAt: "revert-pushed:1"},
		{name: "third verdict decided, no note yet", crashAt: "verdict:3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newScenario(t, scenarioOptions{extraGate: keys})
			b4 := crashQueue(s)
			var crashed result
			if tt.kill != nil {
				crashed = s.runOnceKilled(func() bool { return tt.kill(s) })
			} else {
				crashed = s.runOnce(reconcile.EnvCrashAt + "=" + tt.crashAt)
			}
			if crashed.code != -1 {
				t.Fatalf("sluice exited %d, want it killed", crashed.code)
			}
			if r := s.runOnce(); r.code != 0 {
				t.Fatalf("restarted sluice exited %d", r.code)
			}
			got := s.finalState()
			if !got.equal(want) {
				t.Errorf("after the crash:\n%s\nuninterrupted:\n%s", got, want)
			}
			if n := len(s.revertsOf(b4)); n != 1 {
				t.Errorf("b4 reverted %d times, want once", n)
			}
			for _, h := range s.history("staging") {
				if strings.Contains(s.file(h, "environments/staging/versions/b.yaml"), "b:v4") {
					t.Errorf("staging pointed at %s, whose tree holds B v4", h[:7])
				}
			}
			if left := s.sluiceNamespaces(); len(left) != 0 {
				t.Errorf("namespaces left after the restart: %v", left)
			}
		})
	}
}
