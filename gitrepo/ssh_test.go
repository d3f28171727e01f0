package gitrepo

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/sluice-gitops/sluice/test/gitserver"
)

// sshServer is a Git server with the repository "desired" (one commit on
// main, main protected), reachable over SSH.
func sshServer(t *testing.T) (*gitserver.Server, *gitserver.SSH) {
	t.Helper()
	srv := gitserver.Start(t, gitserver.Options{})
	srv.CreateRepo(t, "desired")
	gitserver.Seed(t, srv, "desired", map[string]string{"a": "1\n"}, "c1")
	srv.InstallHook(t, "desired", "pre-receive", gitserver.ProtectBranches("main", "staging"))
	return srv, srv.StartSSH(t)
}

// sshCreds reads the key the way the config does: from files.
func sshCreds(t *testing.T, keyFile, knownHosts string) *Credentials {
	t.Helper()
	c, err := CredentialsSource{SSHKeyFile: keyFile, KnownHostsFile: knownHosts}.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSSHFetchPushAndNotes(t *testing.T) {
	srv, sshd := sshServer(t)
	r, err := Open(t.Context(), Options{URL: sshd.RepoURL("desired"), Credentials: sshCreds(t, sshd.KeyFile, sshd.KnownHostsFile)})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Fetch(t.Context(), "main"); err != nil {
		t.Fatalf("Fetch over SSH: %v", err)
	}
	tip, err := r.Tip(t.Context(), "main")
	if err != nil {
		t.Fatal(err)
	}
	if want := srv.Clone(t, "desired").Git(t, "rev-parse", "HEAD"); tip.String() != want {
		t.Fatalf("main over SSH = %s, want %s", tip, want)
	}

	// A compare-and-swap push that creates staging, one that fast-forwards
	// main, and one with a stale old value, which must change nothing.
	if err := r.Push(t.Context(), "staging", plumbing.ZeroHash, tip); err != nil {
		t.Fatalf("Push staging over SSH: %v", err)
	}
	next := mkCommit(t, r, tip, "c2", files{"a": "2\n"})
	if err := r.Push(t.Context(), "main", tip, next); err != nil {
		t.Fatalf("Push main over SSH: %v", err)
	}
	other := mkCommit(t, r, tip, "c2'", files{"a": "3\n"})
	if err := r.Push(t.Context(), "main", tip, other); !errors.Is(err, ErrStale) {
		t.Fatalf("Push with a stale old value over SSH error = %v, want ErrStale", err)
	}
	if err := pushSomeNote(t, r); err != nil {
		t.Fatalf("PushNotes over SSH: %v", err)
	}

	w := srv.Clone(t, "desired")
	w.Git(t, "fetch", "--quiet", "origin", "refs/notes/sluice:refs/notes/sluice")
	for ref, want := range map[string]string{"origin/main": next.String(), "origin/staging": tip.String()} {
		if got := w.Git(t, "rev-parse", ref); got != want {
			t.Errorf("%s on the server = %s, want %s", ref, got, want)
		}
	}
	if got := w.Git(t, "notes", "--ref=sluice", "list"); got == "" {
		t.Error("no note reached the server over SSH")
	}
	if log := srv.ProtectLog(t, "desired"); log != nil {
		t.Errorf("branch protection refused SSH pushes: %q", log)
	}
}

// A known_hosts file that names only one of the server's host key types
// must be enough: the client has to ask for that type, as OpenSSH does.
func TestSSHKnownHostsWithOneKeyType(t *testing.T) {
	_, sshd := sshServer(t)
	for i, key := range sshd.HostKeys {
		t.Run(key.Type(), func(t *testing.T) {
			known := sshd.WriteKnownHosts(t, sshd.HostKeys[i])
			r, err := Open(t.Context(), Options{URL: sshd.RepoURL("desired"), Credentials: sshCreds(t, sshd.KeyFile, known)})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Fetch(t.Context(), "main"); err != nil {
				t.Fatalf("Fetch with only %s in known_hosts: %v", key.Type(), err)
			}
		})
	}
}

func TestSSHUnknownHostKeyIsRefusedBeforeAnything(t *testing.T) {
	_, sshd := sshServer(t)
	impostor := gitserver.WriteSSHKey(t, filepath.Join(t.TempDir(), "impostor"))
	empty := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, known := range map[string]string{
		"another key for this host": sshd.WriteKnownHosts(t, impostor),
		"no entry for this host":    empty,
	} {
		t.Run(name, func(t *testing.T) {
			r, err := Open(t.Context(), Options{URL: sshd.RepoURL("desired"), Credentials: sshCreds(t, sshd.KeyFile, known)})
			if err != nil {
				t.Fatal(err)
			}
			err = r.Fetch(t.Context(), "main")
			if !errors.Is(err, ErrHostKey) {
				t.Fatalf("Fetch error = %v, want ErrHostKey", err)
			}
			if IsTransient(err) {
				t.Errorf("a host key failure reported as transient: %v", err)
			}
			if !strings.Contains(err.Error(), known) {
				t.Errorf("error %q does not name the known_hosts file %s", err, known)
			}
		})
	}
	if n := sshd.Execs(); n != 0 {
		t.Errorf("the server ran %d git commands for a client that should have refused its host key", n)
	}
}

func TestSSHUnauthorizedKeyIsErrAuth(t *testing.T) {
	_, sshd := sshServer(t)
	stranger := filepath.Join(t.TempDir(), "id_stranger")
	gitserver.WriteSSHKey(t, stranger)
	r, err := Open(t.Context(), Options{URL: sshd.RepoURL("desired"), Credentials: sshCreds(t, stranger, sshd.KnownHostsFile)})
	if err != nil {
		t.Fatal(err)
	}
	for op, call := range map[string]func() error{
		"Fetch":     func() error { return r.Fetch(t.Context(), "main") },
		"PushNotes": func() error { return pushSomeNote(t, r) },
	} {
		err := call()
		if !errors.Is(err, ErrAuth) {
			t.Errorf("%s error = %v, want ErrAuth", op, err)
		}
		if IsTransient(err) {
			t.Errorf("%s: an auth failure reported as transient", op)
		}
	}
	if sshd.AuthFailures() == 0 {
		t.Error("the server never saw the unauthorized key")
	}
}

func TestSSHMissingRepositoryIsPermanent(t *testing.T) {
	_, sshd := sshServer(t)
	r, err := Open(t.Context(), Options{URL: sshd.RepoURL("nope"), Credentials: sshCreds(t, sshd.KeyFile, sshd.KnownHostsFile)})
	if err != nil {
		t.Fatal(err)
	}
	err = r.Fetch(t.Context(), "main")
	if !errors.Is(err, ErrRepositoryNotFound) || IsTransient(err) {
		t.Errorf("Fetch(missing repository over SSH) error = %v, want ErrRepositoryNotFound", err)
	}
}

// Without knownHostsFile, the host key is checked against $SSH_KNOWN_HOSTS
// (else ~/.ssh/known_hosts), with the same choice of key types.
func TestSSHKnownHostsFromEnvironment(t *testing.T) {
	_, sshd := sshServer(t)
	t.Setenv("SSH_KNOWN_HOSTS", sshd.WriteKnownHosts(t, sshd.HostKeys[0]))
	r, err := Open(t.Context(), Options{URL: sshd.RepoURL("desired"), Credentials: sshCreds(t, sshd.KeyFile, "")})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Fetch(t.Context(), "main"); err != nil {
		t.Fatalf("Fetch with $SSH_KNOWN_HOSTS: %v", err)
	}

	t.Setenv("SSH_KNOWN_HOSTS", filepath.Join(t.TempDir(), "missing"))
	_, err = Open(t.Context(), Options{URL: sshd.RepoURL("desired"), Credentials: sshCreds(t, sshd.KeyFile, "")})
	if err == nil || !strings.Contains(err.Error(), "known_hosts") {
		t.Errorf("Open without any known_hosts file error = %v, want one that says known_hosts is missing", err)
	}
}
