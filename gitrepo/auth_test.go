package gitrepo

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/sluice-gitops/sluice/test/gitserver"
)

const (
	goodPassword = "gitserver-password-4711"
	badPassword  = "wrong-pa55word-s3cr3t"
)

func authServer(t *testing.T) (*gitserver.Server, string) {
	t.Helper()
	srv := gitserver.Start(t, gitserver.Options{Username: "sluice", Password: goodPassword})
	url := srv.CreateRepo(t, "desired")
	gitserver.Seed(t, srv, "desired", map[string]string{"a": "1\n"}, "c1")
	return srv, url
}

func TestWrongPasswordIsErrAuthWithoutTheSecret(t *testing.T) {
	_, url := authServer(t)
	tests := []struct {
		name  string
		url   string
		creds *Credentials
	}{
		{name: "a wrong password", url: url, creds: &Credentials{Username: "sluice", Password: badPassword}},
		{name: "a wrong token without username", url: url, creds: &Credentials{Password: badPassword}},
		{name: "a wrong password in the URL", url: strings.Replace(url, "http://", "http://sluice:"+badPassword+"@", 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Open(t.Context(), Options{URL: tt.url, Credentials: tt.creds})
			if err != nil {
				t.Fatal(err)
			}
			for op, call := range map[string]func() error{
				"Fetch": func() error { return r.Fetch(t.Context(), "main") },
				"Push": func() error {
					return r.Push(t.Context(), "main", plumbing.ZeroHash, mkCommit(t, r, plumbing.ZeroHash, "x", files{"x": "x"}))
				},
				"PushNotes": func() error { return pushSomeNote(t, r) },
			} {
				err := call()
				if !errors.Is(err, ErrAuth) {
					t.Errorf("%s error = %v, want ErrAuth", op, err)
				}
				var re *RemoteError
				if !errors.As(err, &re) {
					t.Errorf("%s error = %T, want a *RemoteError", op, err)
				}
				if IsTransient(err) {
					t.Errorf("%s: an auth failure reported as transient", op)
				}
				for _, form := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
					if strings.Contains(form, badPassword) {
						t.Errorf("%s error shows the password: %s", op, form)
					}
				}
			}
		})
	}
}

func pushSomeNote(t *testing.T, r *Repository) error {
	t.Helper()
	if err := r.WriteNote(t.Context(), hash('a'), Note{Records: []Record{{Gate: "g", Verdict: VerdictPassed}}}); err != nil {
		t.Fatal(err)
	}
	return r.PushNotes(t.Context())
}

func TestRightPasswordFetches(t *testing.T) {
	_, url := authServer(t)
	r, err := Open(t.Context(), Options{URL: url, Credentials: &Credentials{Username: "sluice", Password: goodPassword}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Fetch(t.Context(), "main"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Tip(t.Context(), "main"); err != nil {
		t.Fatal(err)
	}
	if err := pushSomeNote(t, r); err != nil {
		t.Fatalf("PushNotes over HTTP: %v", err)
	}
}

func TestOutageIsTransient(t *testing.T) {
	srv, url := authServer(t)
	r, err := Open(t.Context(), Options{URL: url, Credentials: &Credentials{Username: "sluice", Password: goodPassword}})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetAvailable(false)
	err = r.Fetch(t.Context(), "main")
	if !IsTransient(err) {
		t.Errorf("Fetch during an outage error = %v, want transient", err)
	}
	if strings.Contains(err.Error(), goodPassword) {
		t.Errorf("error shows the password: %v", err)
	}
	srv.SetAvailable(true)
	if err := r.Fetch(t.Context(), "main"); err != nil {
		t.Errorf("Fetch after the outage: %v", err)
	}
}

func TestMissingRepository(t *testing.T) {
	srv, _ := authServer(t)
	r, err := Open(t.Context(), Options{URL: srv.URL + "/nope.git", Credentials: &Credentials{Username: "sluice", Password: goodPassword}})
	if err != nil {
		t.Fatal(err)
	}
	err = r.Fetch(t.Context(), "main")
	if err == nil || IsTransient(err) {
		t.Errorf("Fetch(missing repository) error = %v, want a permanent error", err)
	}
}

func TestCredentialsNeverPrintSecrets(t *testing.T) {
	c := Credentials{Username: "u", Password: "pw-secret", SSHKey: []byte("-----BEGIN key-secret"), SSHKeyPassphrase: "pass-secret"}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("creds", "c", c, "p", &c)
	for _, s := range []string{
		c.String(), fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c),
		fmt.Sprintf("%v %+v %#v", &c, &c, &c), logged.String(),
	} {
		for _, secret := range []string{"pw-secret", "key-secret", "pass-secret"} {
			if strings.Contains(s, secret) {
				t.Errorf("%q shows %s", s, secret)
			}
		}
	}
	if !strings.Contains(c.String(), "Password: set") {
		t.Errorf("String() = %q, want it to say the password is set", c.String())
	}
}

func TestCredentialsSourceResolve(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwFile, []byte("file-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyFile := filepath.Join(dir, "empty")
	if err := os.WriteFile(emptyFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLUICE_TEST_USER", "env-user")
	t.Setenv("SLUICE_TEST_TOKEN", "env-secret")
	t.Setenv("SLUICE_TEST_EMPTY", "")

	c, err := CredentialsSource{UsernameEnv: "SLUICE_TEST_USER", PasswordFile: pwFile}.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if c.Username != "env-user" || c.Password != "file-secret" {
		t.Errorf("Resolve() = %q / %q, want env-user / file-secret (trailing newline dropped)", c.Username, c.Password)
	}
	c, err = CredentialsSource{Username: "u", PasswordEnv: "SLUICE_TEST_TOKEN"}.Resolve()
	if err != nil || c.Password != "env-secret" {
		t.Errorf("Resolve(passwordEnv) = %v, %v", c, err)
	}

	tests := []struct {
		name     string
		src      CredentialsSource
		wantName string
	}{
		{"a missing password file", CredentialsSource{PasswordFile: filepath.Join(dir, "missing")}, "missing"},
		{"an empty password file", CredentialsSource{PasswordFile: emptyFile}, emptyFile},
		{"an unset variable", CredentialsSource{PasswordEnv: "SLUICE_TEST_UNSET_VAR"}, "SLUICE_TEST_UNSET_VAR"},
		{"an empty variable", CredentialsSource{PasswordEnv: "SLUICE_TEST_EMPTY"}, "SLUICE_TEST_EMPTY"},
		{"a password from two places", CredentialsSource{PasswordEnv: "SLUICE_TEST_TOKEN", PasswordFile: pwFile}, "passwordFile"},
		{"a missing SSH key file", CredentialsSource{SSHKeyFile: filepath.Join(dir, "id_missing")}, "id_missing"},
		{"a missing known hosts file", CredentialsSource{KnownHostsFile: filepath.Join(dir, "known")}, "known"},
		{"a passphrase without a key", CredentialsSource{SSHKeyPassphraseEnv: "SLUICE_TEST_TOKEN"}, "sshKeyFile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.src.Resolve()
			if err == nil {
				t.Fatal("Resolve() succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantName) {
				t.Errorf("error %q does not name %s", err, tt.wantName)
			}
			for _, secret := range []string{"env-secret", "file-secret"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows a secret", err)
				}
			}
		})
	}
}

func TestOpenRejectsBadSSHKeyWithoutEchoingIt(t *testing.T) {
	key := "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-really-a-key-secret\n-----END OPENSSH PRIVATE KEY-----\n"
	_, err := Open(t.Context(), Options{URL: "ssh://git@example.com/repo.git", Credentials: &Credentials{SSHKey: []byte(key), SSHKeyPassphrase: "phrase-secret"}})
	if err == nil {
		t.Fatal("Open() with a bad key succeeded")
	}
	if strings.Contains(err.Error(), "not-really-a-key-secret") || strings.Contains(err.Error(), "phrase-secret") {
		t.Errorf("error shows a secret: %v", err)
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://user:tok3n@example.com/r.git", "https://user:***@example.com/r.git"},
		{"https://example.com/r.git", "https://example.com/r.git"},
		{"git@example.com:r.git", "git@example.com:r.git"},
		{"/srv/git/r.git", "/srv/git/r.git"},
	}
	for _, tt := range tests {
		if got := redactURL(tt.in); got != tt.want {
			t.Errorf("redactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	s := newScrubber("https://u:p%40ss@example.com/r.git", &Credentials{Username: "u", Password: "hunter22"})
	got := s.scrub("GET https://u:p%40ss@example.com/r.git: bad hunter22 and aHVudGVyMjI and " + "dTpodW50ZXIyMg==")
	for _, secret := range []string{"p%40ss", "p@ss", "hunter22", "dTpodW50ZXIyMg=="} {
		if strings.Contains(got, secret) {
			t.Errorf("scrub left %q in %q", secret, got)
		}
	}
}
