package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gitops/sluice/test/gitserver"
)

// sshConfig writes a config for the repository "desired" over SSH, with
// the key and known_hosts given as files, and returns its path.
func sshConfig(t *testing.T, sshd *gitserver.SSH, keyFile, knownHosts string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sluice.yaml")
	writeFile(t, p, fmt.Sprintf("repository:\n  url: %s\n  credentials:\n    sshKeyFile: %s\n    knownHostsFile: %s\n",
		sshd.RepoURL("desired"), keyFile, knownHosts)+stagingGate)
	return p
}

// TestRunOnceOverSSH: the real CLI drains a queue from an ssh:// remote with
// a key file and a known_hosts file: it fetches, pushes the revert of a
// broken commit and its notes, and status reads them back, all over SSH,
// with main and staging protected against anything but fast-forwards.
func TestRunOnceOverSSH(t *testing.T) {
	f := newRepoFixture(t, gitserver.Options{})
	f.srv.InstallHook(t, "desired", "pre-receive", gitserver.ProtectBranches("main", "staging"))
	sshd := f.srv.StartSSH(t)
	f.work.Write(t, "environments/staging/kustomization.yaml", "resources:\n  - web.yaml\n  - missing.yaml\n")
	bad := f.work.Commit(t, "add a resource that is not there")
	if err := f.work.Push(t, "HEAD:refs/heads/main"); err != nil {
		t.Fatal(err)
	}
	cfg := sshConfig(t, sshd, sshd.KeyFile, sshd.KnownHostsFile)

	if code, _, _ := sluice(t, "run", "--once", "--config", cfg, "--kubeconfig", f.kubeconfig); code != 0 {
		t.Fatalf("run --once over SSH exited %d", code)
	}
	f.work.Git(t, "fetch", "-q", "origin", "+refs/heads/*:refs/remotes/origin/*", "+refs/notes/*:refs/notes/*")
	if got := f.work.Git(t, "log", "-1", "--format=%(trailers:key=Sluice-Rejected,valueonly)", "origin/main"); got != bad {
		t.Errorf("main's tip rejects %q, want the broken commit %s", got, bad)
	}
	if got, want := f.work.Git(t, "rev-parse", "origin/staging"), f.work.Git(t, "rev-parse", "origin/main"); got != want {
		t.Errorf("staging = %s, want main's tip, the revert, %s", got, want)
	}
	if note := f.work.Git(t, "notes", "--ref=sluice", "show", bad); !strings.Contains(note, "verdict: failed") {
		t.Errorf("the broken commit's note over SSH:\n%s\nwant failed", note)
	}
	if log := f.srv.ProtectLog(t, "desired"); log != nil {
		t.Errorf("branch protection refused pushes: %q", log)
	}
	code, stdout, _ := sluice(t, "status", "--config", cfg)
	if code != 0 || !strings.Contains(stdout, bad[:7]) || !strings.Contains(stdout, "failed") {
		t.Errorf("status over SSH (exit %d) does not show %s failed:\n%s", code, bad[:7], stdout)
	}
	if n := sshd.Execs(); n == 0 {
		t.Error("the SSH server ran no git command; the run did not go over SSH")
	}
}

// TestSSHTrustProblemsStopAtOnce: an untrusted host key or an unauthorized
// key makes status and run --once fail at once, saying which, without a
// retry loop and without touching the cluster.
func TestSSHTrustProblemsStopAtOnce(t *testing.T) {
	f := newRepoFixture(t, gitserver.Options{})
	sshd := f.srv.StartSSH(t)
	stranger := filepath.Join(t.TempDir(), "id_stranger")
	gitserver.WriteSSHKey(t, stranger)
	impostor := gitserver.WriteSSHKey(t, filepath.Join(t.TempDir(), "impostor"))
	otherHost := sshd.WriteKnownHosts(t, impostor)
	for name, tc := range map[string]struct {
		cfg, want string
	}{
		"an untrusted host key": {sshConfig(t, sshd, sshd.KeyFile, otherHost), "host key"},
		"an unauthorized key":   {sshConfig(t, sshd, stranger, sshd.KnownHostsFile), "unable to authenticate"},
	} {
		t.Run(name, func(t *testing.T) {
			for _, args := range [][]string{
				{"status", "--config", tc.cfg},
				{"run", "--once", "--config", tc.cfg, "--kubeconfig", f.kubeconfig},
			} {
				code, stdout, stderr := sluice(t, args...)
				if code == 0 {
					t.Errorf("sluice %s exited 0", args[0])
				}
				if !strings.Contains(stdout+stderr, tc.want) {
					t.Errorf("sluice %s does not say %q", args[0], tc.want)
				}
			}
		})
	}
	if n := sshd.Execs(); n != 0 {
		t.Errorf("the SSH server ran %d git commands for untrusted clients", n)
	}
	if n := f.kube.requestCount(); n != 0 {
		t.Errorf("the cluster was called %d times though Git could not be reached", n)
	}
}
