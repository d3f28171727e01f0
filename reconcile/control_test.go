package reconcile

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sluice-gitops/sluice/reconcile/plan"
	"github.com/sluice-gitops/sluice/testenv"
)

// controlEnv stands in for a cluster that answers objects deploying the
// image refused with an error Sluice does not recognise (a 500 without a
// reason), and, while broken, answers every candidate so, a control run too.
type controlEnv struct {
	mu      sync.Mutex
	refused string
	broken  bool
	runs    []testenv.TestSpec
}

func (e *controlEnv) Test(_ context.Context, spec testenv.TestSpec, _ testenv.StepFunc) (map[string]time.Duration, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.runs = append(e.runs, spec)
	answer := &testenv.UnrecognisedError{Step: testenv.StepApply, Err: apierrors.NewInternalError(errors.New("something the API server does not explain"))}
	if e.broken {
		return nil, answer
	}
	for _, o := range spec.Objects {
		if strings.Contains(images(o), e.refused) {
			return nil, answer
		}
	}
	return nil, nil
}

func (e *controlEnv) Cleanup(context.Context, string) ([]string, error) { return nil, nil }

func images(o *unstructured.Unstructured) string {
	var out []string
	cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
	for _, c := range cs {
		if m, ok := c.(map[string]any); ok {
			img, _ := m["image"].(string)
			out = append(out, img)
		}
	}
	return strings.Join(out, ",")
}

// An error answer Sluice does not recognise is judged by a control run of
// the last passed candidate on the same cluster: when the control passes,
// the commit failed (and is reverted once); when it fails too, the cluster
// is at fault: an error, retried, never reverted.
func TestUnrecognisedErrorIsJudgedByAControlRun(t *testing.T) {
	tests := []struct {
		name        string
		broken      bool
		wantVerdict Verdict
		wantReason  string
		wantErr     string
	}{
		{
			name:        "the control passes: the commit's fault",
			wantVerdict: Failed,
			wantReason:  "applies on the same cluster, so this is the commit's fault: Internal error occurred: something the API server does not explain",
		},
		{
			name:        "the control fails too: the cluster's fault",
			broken:      true,
			wantVerdict: Error,
			wantReason:  "fails the same step on this cluster too",
			wantErr:     "giving up after 5 attempts",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newQueueFixture(t)
			env := &controlEnv{refused: "b:v4", broken: tt.broken}
			f.runner.Env = env
			a3 := f.push("bump A to v3", "env/a.yaml", deployment("a", "v3"))
			env.mu.Lock()
			env.broken = false // a3 passes on a healthy cluster first
			env.mu.Unlock()
			if err := f.runner.RunOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			env.mu.Lock()
			env.broken, env.runs = tt.broken, nil
			env.mu.Unlock()
			b4 := f.push("bump B to v4", "env/b.yaml", deployment("b", "v4"))

			err := f.runner.RunOnce(context.Background())
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("RunOnce = %v, want error %q", err, tt.wantErr)
			}
			rec := f.record(b4)
			if Verdict(rec.Verdict) != tt.wantVerdict || !strings.Contains(rec.Reason, tt.wantReason) || !strings.Contains(rec.Reason, "the last passed candidate "+a3[:7]) {
				t.Errorf("b4 = %s: %q; want %s naming the control %s and %q", rec.Verdict, rec.Reason, tt.wantVerdict, a3[:7], tt.wantReason)
			}
			reverts := f.remote("log", "--format=%s", b4+"..origin/main")
			if want := map[Verdict]string{Failed: `Revert "bump B to v4"`, Error: ""}[tt.wantVerdict]; reverts != want {
				t.Errorf("commits on main after b4: %q, want %q", reverts, want)
			}

			env.mu.Lock()
			defer env.mu.Unlock()
			var controls int
			for _, run := range env.runs {
				if !strings.Contains(run.Namespace, "-ctl-") {
					continue
				}
				controls++
				if want := ControlNamespace("staging", b4, b4); run.Namespace != want || run.Gate != "staging" {
					t.Errorf("the control ran in %s of gate %q, want %s of staging (its labels are what Cleanup recognises)", run.Namespace, run.Gate, want)
				}
				if run.Until != testenv.StepApply || len(run.Commands) != 0 {
					t.Errorf("the control ran until %q with %d commands; want only the step that failed (apply)", run.Until, len(run.Commands))
				}
				var imgs []string
				for _, o := range run.Objects {
					imgs = append(imgs, images(o))
				}
				if got := strings.Join(imgs, ","); got != "example.com/a:v3,example.com/b:v3" {
					t.Errorf("the control applied %s, want the last passed candidate's (a:v3, b:v3)", got)
				}
			}
			if controls == 0 {
				t.Errorf("no control run among %d runs", len(env.runs))
			}
		})
	}
}

// Each planned run's control has a namespace of its own, named from the
// run's key: two runs of one commit that leave out different commits
// (speculative gating), or commits that share a prefix, never share one.
// It fits 63 bytes, names the commit, is no test run's namespace, and is a
// valid namespace name.
func TestControlNamespaceIsPerRunAndFits(t *testing.T) {
	sha := "0123456789abcdef0123456789abcdef01234567"
	near := "012ffff789abcdef0123456789abcdef01234567" // the first 3 hex digits of sha
	long := strings.Repeat("g", 63)
	for _, gate := range []string{"staging", long} {
		seen := map[string]string{}
		for _, commit := range []string{sha, near} {
			for _, key := range []string{commit, plan.Key(commit, []string{"b"}), plan.Key(commit, []string{"c"})} {
				ns := ControlNamespace(gate, commit, key)
				if len(ns) > 63 || !strings.Contains(ns, commit[:7]) || !strings.Contains(ns, "-ctl-") {
					t.Errorf("ControlNamespace(%q, %q) = %q: want at most 63 bytes naming the commit and -ctl-", gate, key, ns)
				}
				if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
					t.Errorf("ControlNamespace(%q, %q) = %q: %v", gate, key, ns, errs)
				}
				if other, dup := seen[ns]; dup {
					t.Errorf("runs %q and %q share control namespace %s", key, other, ns)
				}
				seen[ns] = key
				seen[RunNamespace(gate, commit, key)] = "the test run " + key
			}
		}
	}
}
