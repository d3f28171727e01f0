package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/sluice-gitops/sluice/test/cluster"
)

func TestMain(m *testing.M) {
	os.Exit(cluster.Main(m))
}

func TestDeploymentBecomesAvailable(t *testing.T) {
	t.Parallel()
	c := cluster.Require(t)
	ns := c.Namespace(t)
	client := c.Client(t)

	createDeployment(t, client, deployment(ns, "app", "registry.example/app:v1", nil))
	waitFor(t, time.Minute, "deployment available", func(ctx context.Context) (bool, error) {
		d, err := client.AppsV1().Deployments(ns).Get(ctx, "app", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return d.Status.AvailableReplicas == 2 && deploymentCondition(d, appsv1.DeploymentAvailable) == corev1.ConditionTrue, nil
	})
}

func TestJobCompletes(t *testing.T) {
	t.Parallel()
	c := cluster.Require(t)
	ns := c.Namespace(t)
	client := c.Client(t)

	createJob(t, client, job(ns, "check", nil, nil))
	waitJob(t, client, ns, "check", batchv1.JobComplete)
}

func TestNeverReadyPodsKeepDeploymentUnavailable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		image       string
		annotations map[string]string
	}{
		{name: "by annotation", image: "registry.example/app:v2", annotations: map[string]string{"sluice.dev/simulate": "never-ready"}},
		{name: "by image tag", image: "registry.example/app:v2-never-ready"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := cluster.Require(t)
			ns := c.Namespace(t)
			client := c.Client(t)

			createDeployment(t, client, deployment(ns, "app", tt.image, tt.annotations))
			// The pods run, so the stage has acted on them ...
			waitFor(t, time.Minute, "pods running", func(ctx context.Context) (bool, error) {
				pods := listPods(ctx, t, client, ns)
				running := 0
				for _, p := range pods {
					if p.Status.Phase == corev1.PodRunning {
						running++
					}
				}
				return running == 2, nil
			})
			// ... and stay unready, the deployment unavailable.
			for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
				ctx := t.Context()
				for _, p := range listPods(ctx, t, client, ns) {
					if p.Status.Phase != corev1.PodRunning || podCondition(&p, corev1.PodReady) != corev1.ConditionFalse {
						t.Fatalf("pod %s: phase %s, Ready %s; want Running and not Ready", p.Name, p.Status.Phase, podCondition(&p, corev1.PodReady))
					}
				}
				d, err := client.AppsV1().Deployments(ns).Get(ctx, "app", metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if d.Status.AvailableReplicas != 0 || deploymentCondition(d, appsv1.DeploymentAvailable) == corev1.ConditionTrue {
					t.Fatalf("deployment available (%d replicas), want unavailable", d.Status.AvailableReplicas)
				}
			}
		})
	}
}

func TestFailAnnotationFailsJob(t *testing.T) {
	t.Parallel()
	c := cluster.Require(t)
	ns := c.Namespace(t)
	client := c.Client(t)

	createJob(t, client, job(ns, "check", map[string]string{"sluice.dev/simulate": "fail"}, nil))
	waitJob(t, client, ns, "check", batchv1.JobFailed)
	term := terminatedState(t, client, ns, "check")
	if term.ExitCode != 1 || term.Reason != "Error" || !strings.Contains(term.Message, "sluice.dev/simulate") {
		t.Errorf("container terminated with %d %s %q; want 1 Error and a message naming the annotation", term.ExitCode, term.Reason, term.Message)
	}
}

func TestFailAnnotationCrashLoopsDeployment(t *testing.T) {
	t.Parallel()
	c := cluster.Require(t)
	ns := c.Namespace(t)
	client := c.Client(t)

	createDeployment(t, client, deployment(ns, "app", "registry.example/app:v3", map[string]string{"sluice.dev/simulate": "fail"}))
	waitFor(t, time.Minute, "pods in CrashLoopBackOff", func(ctx context.Context) (bool, error) {
		pods := listPods(ctx, t, client, ns)
		crashing := 0
		for _, p := range pods {
			cs := p.Status.ContainerStatuses
			if p.Status.Phase == corev1.PodRunning && len(cs) == 1 && cs[0].State.Waiting != nil &&
				cs[0].State.Waiting.Reason == "CrashLoopBackOff" && cs[0].LastTerminationState.Terminated != nil &&
				cs[0].LastTerminationState.Terminated.ExitCode == 1 {
				crashing++
			}
		}
		return crashing == 2 && len(pods) == 2, nil
	})
	d, err := client.AppsV1().Deployments(ns).Get(t.Context(), "app", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status.AvailableReplicas != 0 {
		t.Errorf("deployment has %d available replicas, want 0", d.Status.AvailableReplicas)
	}
}

func TestContractCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		require     string
		actual      *string // nil: SIMULATE_ACTUAL unset
		want        batchv1.JobConditionType
		wantMessage string
	}{
		{name: "matching image completes", require: "b:v[1-3]$", actual: ptr("registry.example/b:v3"), want: batchv1.JobComplete},
		{name: "non-matching image fails", require: "b:v[1-3]$", actual: ptr("registry.example/b:v4"), want: batchv1.JobFailed,
			wantMessage: `SIMULATE_ACTUAL "registry.example/b:v4" does not match SIMULATE_REQUIRE "b:v[1-3]$"`},
		{name: "unset actual fails", require: "b:v[1-3]$", want: batchv1.JobFailed,
			wantMessage: `SIMULATE_ACTUAL "" does not match SIMULATE_REQUIRE "b:v[1-3]$"`},
		{name: "invalid expression fails", require: "b:v[1-3", actual: ptr("b:v1"), want: batchv1.JobFailed,
			wantMessage: `SIMULATE_REQUIRE "b:v[1-3"`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := cluster.Require(t)
			ns := c.Namespace(t)
			client := c.Client(t)

			env := []corev1.EnvVar{{Name: "SIMULATE_REQUIRE", Value: tt.require}}
			if tt.actual != nil {
				env = append(env, corev1.EnvVar{Name: "SIMULATE_ACTUAL", Value: *tt.actual})
			}
			name := "contract-" + strconv.Itoa(i)
			createJob(t, client, job(ns, name, nil, env))
			waitJob(t, client, ns, name, tt.want)
			if tt.want == batchv1.JobFailed {
				term := terminatedState(t, client, ns, name)
				if term.ExitCode != 1 || term.Reason != "Error" || !strings.Contains(term.Message, tt.wantMessage) {
					t.Errorf("container terminated with %d %s %q; want 1 Error and a message containing %q", term.ExitCode, term.Reason, term.Message, tt.wantMessage)
				}
			}
		})
	}
}

// TestPodStagesShareTheSimulatedMode guards the one rule every pod stage
// repeats: stages could otherwise disagree about a Pod and both match it.
func TestPodStagesShareTheSimulatedMode(t *testing.T) {
	files, err := filepath.Glob("stages/pod-*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no pod stages: %v", err)
	}
	var want string
	values := map[string][]string{}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var stage struct {
			Spec struct {
				Selector struct {
					MatchExpressions []struct {
						Key    string   `json:"key"`
						Values []string `json:"values"`
					} `json:"matchExpressions"`
				} `json:"selector"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(data, &stage); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, e := range stage.Spec.Selector.MatchExpressions {
			if !strings.Contains(e.Key, "sluice.dev/simulate") {
				continue
			}
			if want == "" {
				want = e.Key
			}
			if e.Key != want {
				t.Errorf("%s: the simulated-mode expression differs from the other stages'", file)
			}
			values[filepath.Base(file)] = e.Values
		}
	}
	for _, file := range []string{"pod-ready.yaml", "pod-complete.yaml", "pod-never-ready.yaml", "pod-fail.yaml"} {
		if len(values[file]) != 1 {
			t.Errorf("%s: selects simulated modes %v, want exactly one", file, values[file])
		}
	}
}

func TestStopAndStartAPIServer(t *testing.T) {
	c := privateCluster(t)
	client := kubernetes.NewForConfigOrDie(c.Config)
	quick := rest.CopyConfig(c.Config)
	quick.Timeout = 2 * time.Second
	quickClient := kubernetes.NewForConfigOrDie(quick)
	ctx := t.Context()

	if _, err := quickClient.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("before the outage: %v", err)
	}
	if err := c.StopComponent(ctx, cluster.KubeApiserver); err != nil {
		t.Fatal(err)
	}
	if _, err := quickClient.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil {
		t.Fatal("API request succeeded while the API server was stopped")
	} else {
		t.Logf("during the outage: %v", err)
	}
	if err := c.StopComponent(ctx, cluster.KubeApiserver); err != nil {
		t.Errorf("stopping a stopped component: %v", err)
	}
	begin := time.Now()
	if err := c.StartComponent(ctx, cluster.KubeApiserver); err != nil {
		t.Fatal(err)
	}
	t.Logf("API server ready again in %s", time.Since(begin).Round(time.Millisecond))
	if _, err := quickClient.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
	// The controllers came through the outage.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "after-outage"}}
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "default service account", func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	createJob(t, client, job(ns.Name, "check", nil, nil))
	waitJob(t, client, ns.Name, "check", batchv1.JobComplete)
}

func TestStopLeavesNothingBehind(t *testing.T) {
	c := privateCluster(t)
	workdir := c.Workdir
	if pids := processesNaming(workdir); len(pids) == 0 {
		t.Fatalf("no process names %s while the cluster runs", workdir)
	}
	begin := time.Now()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped in %s", time.Since(begin).Round(time.Millisecond))
	assertGone(t, workdir)
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestCrashLeavesNothingBehind runs this test binary again with a test that
// panics while its package cluster runs: Main's deferred Stop never runs,
// and the watchdog must remove the cluster.
func TestCrashLeavesNothingBehind(t *testing.T) {
	if os.Getenv("SLUICE_TEST_KUBECONFIG") != "" {
		t.Skip("the package cluster is external")
	}
	cluster.Require(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "SLUICE_CLUSTER_CRASH_HELPER=1")
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("crash helper: want a crash, got %v\n%s", err, out)
	}
	_, rest, ok := bytes.Cut(out, []byte("workdir="))
	if !ok {
		t.Fatalf("crash helper printed no workdir:\n%s", out)
	}
	workdir := strings.TrimSpace(string(bytes.SplitN(rest, []byte("\n"), 2)[0]))
	waitFor(t, 30*time.Second, "watchdog cleanup of "+workdir, func(context.Context) (bool, error) {
		_, err := os.Stat(workdir)
		return errors.Is(err, fs.ErrNotExist) && len(processesNaming(workdir)) == 0, nil
	})
}

func TestCrashHelper(t *testing.T) {
	if os.Getenv("SLUICE_CLUSTER_CRASH_HELPER") != "1" {
		t.Skip("run by TestCrashLeavesNothingBehind")
	}
	fmt.Printf("workdir=%s\n", cluster.Require(t).Workdir)
	panic("simulated crash with a running test cluster")
}

// privateCluster starts a one-node cluster of the test's own, for tests
// that break or stop it.
func privateCluster(t *testing.T) *cluster.Cluster {
	t.Helper()
	if os.Getenv("SLUICE_TEST_KUBECONFIG") != "" {
		t.Skip("the package cluster is external; not starting another")
	}
	cluster.Require(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	begin := time.Now()
	c, err := cluster.Start(ctx, cluster.Options{Name: "private", Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("started in %s", time.Since(begin).Round(time.Millisecond))
	workdir := c.Workdir
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
		assertGone(t, workdir)
	})
	return c
}

func assertGone(t *testing.T, workdir string) {
	t.Helper()
	if pids := processesNaming(workdir); len(pids) != 0 {
		t.Errorf("processes naming %s left running: %v", workdir, pids)
	}
	if _, err := os.Stat(workdir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("work directory %s left behind (stat: %v)", workdir, err)
	}
}

// processesNaming lists the live processes whose command line names a path
// in dir, read from /proc independently of the package's own bookkeeping.
func processesNaming(dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var found []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil || e.Name() == strconv.Itoa(os.Getpid()) {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(dir+"/")) {
			found = append(found, e.Name()+": "+string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		}
	}
	return found
}

func deployment(ns, name, image string, annotations map[string]string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
			},
		},
	}
}

func job(ns, name string, annotations map[string]string, env []corev1.EnvVar) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr(int32(0)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: annotations},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers:    []corev1.Container{{Name: "test", Image: "registry.example/tests:v1", Env: env}},
				},
			},
		},
	}
}

func createDeployment(t *testing.T, client kubernetes.Interface, d *appsv1.Deployment) {
	t.Helper()
	if _, err := client.AppsV1().Deployments(d.Namespace).Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createJob(t *testing.T, client kubernetes.Interface, j *batchv1.Job) {
	t.Helper()
	if _, err := client.BatchV1().Jobs(j.Namespace).Create(t.Context(), j, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitJob waits for the Job to finish and fails unless it ends with want.
func waitJob(t *testing.T, client kubernetes.Interface, ns, name string, want batchv1.JobConditionType) {
	t.Helper()
	var got batchv1.JobConditionType
	waitFor(t, time.Minute, "job "+name+" finished", func(ctx context.Context) (bool, error) {
		j, err := client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range j.Status.Conditions {
			if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
				got = c.Type
				return true, nil
			}
		}
		return false, nil
	})
	if got != want {
		t.Fatalf("job %s: %s, want %s", name, got, want)
	}
}

// terminatedState returns how the first container of the Job's pod ended.
func terminatedState(t *testing.T, client kubernetes.Interface, ns, jobName string) corev1.ContainerStateTerminated {
	t.Helper()
	pods, err := client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "job-name=" + jobName})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 {
		t.Fatalf("job %s has %d pods, want 1", jobName, len(pods.Items))
	}
	p := pods.Items[0]
	if p.Status.Phase != corev1.PodFailed && p.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("pod %s: phase %s, want it terminated", p.Name, p.Status.Phase)
	}
	if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Terminated == nil {
		t.Fatalf("pod %s: container not terminated: %+v", p.Name, p.Status.ContainerStatuses)
	}
	return *p.Status.ContainerStatuses[0].State.Terminated
}

func listPods(ctx context.Context, t *testing.T, client kubernetes.Interface, ns string) []corev1.Pod {
	t.Helper()
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pods.Items
}

func deploymentCondition(d *appsv1.Deployment, typ appsv1.DeploymentConditionType) corev1.ConditionStatus {
	for _, c := range d.Status.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return corev1.ConditionUnknown
}

func podCondition(p *corev1.Pod, typ corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return corev1.ConditionUnknown
}

// waitFor polls cond until it is true, failing the test after timeout with
// cond's last error.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var last error
	for {
		ok, err := cond(ctx)
		if ok {
			return
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %s (last error: %v)", what, timeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func ptr[T any](v T) *T { return &v }
