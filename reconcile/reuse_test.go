package reconcile

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gitops/sluice/testenv"
)

// releasingEnv is fakeEnv keeping environments (a Releaser): it records
// whether each test asked to reuse one and which gates were released.
type releasingEnv struct {
	fakeEnv
	rmu      sync.Mutex
	reuse    []bool
	released []string
}

func (e *releasingEnv) Test(ctx context.Context, spec testenv.TestSpec, onStep testenv.StepFunc) (map[string]time.Duration, error) {
	e.rmu.Lock()
	e.reuse = append(e.reuse, spec.Reuse)
	e.rmu.Unlock()
	return e.fakeEnv.Test(ctx, spec, onStep)
}

func (e *releasingEnv) Release(_ context.Context, gate string) error {
	e.rmu.Lock()
	defer e.rmu.Unlock()
	e.released = append(e.released, gate)
	return nil
}

func (e *releasingEnv) seen() ([]bool, []string) {
	e.rmu.Lock()
	defer e.rmu.Unlock()
	return slices.Clone(e.reuse), slices.Clone(e.released)
}

// A gate with ReuseEnvironment asks the cluster to reuse environments and
// releases what it kept when its loop ends: at the end of RunOnce, and when
// the daemon stops. A gate without it releases nothing.
func TestReuseEnvironmentIsReleased(t *testing.T) {
	for _, reuse := range []bool{true, false} {
		f := newQueueFixture(t)
		env := &releasingEnv{fakeEnv: fakeEnv{broken: []string{"b:v4"}}}
		f.runner.Env = env
		f.runner.Gates[0].ReuseEnvironment = reuse
		f.push("bump A to v3", "env/a.yaml", deployment("a", "v3"))
		f.push("bump B to v4", "env/b.yaml", deployment("b", "v4"))
		if err := f.runner.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		asked, released := env.seen()
		if len(asked) != 2 || slices.Contains(asked, !reuse) {
			t.Errorf("reuse %v: the tests asked %v", reuse, asked)
		}
		want := []string(nil)
		if reuse {
			want = []string{"staging"}
		}
		if !slices.Equal(released, want) {
			t.Errorf("reuse %v: RunOnce released %v, want %v", reuse, released, want)
		}

		// The daemon releases when it stops.
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- f.runner.Run(ctx, time.Hour) }()
		f.push("bump A to v4", "env/a.yaml", deployment("a", "v4"))
		f.runner.Wake()
		for deadline := time.Now().Add(30 * time.Second); ; {
			if asked, _ := env.seen(); len(asked) == 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the daemon did not test the new bump")
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if _, released := env.seen(); reuse && len(released) != 2 || !reuse && len(released) != 0 {
			t.Errorf("reuse %v: released %v after the daemon stopped", reuse, released)
		}
	}
}
