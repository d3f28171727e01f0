// Package gitea starts a real Gitea for tests, built from source by
// `make tools` (test/tools/gitea) into bin/gitea: on loopback, sqlite,
// no SSH, no mail, one admin user. The tests then make users, tokens,
// repositories and branch protection through Gitea's own SDK.
//
// Without the binary the tests that need it are skipped with a message
// saying how to build it, except on CI (CI set), where they fail.
package gitea

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	sdk "code.gitea.io/sdk/gitea"
)

// Server is a running Gitea.
type Server struct {
	// URL is its root, http://127.0.0.1:<port>.
	URL string
	// Admin is the admin user's client.
	Admin *sdk.Client

	dir    string
	bin    string
	config string
	env    []string
}

// Binary is the Gitea binary the tests use: $SLUICE_TOOLS_DIR/gitea, else
// bin/gitea at the root of the repository.
func Binary() string {
	if d := os.Getenv("SLUICE_TOOLS_DIR"); d != "" {
		return filepath.Join(d, "gitea")
	}
	return filepath.Join(repoRoot(), "bin", "gitea")
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Start starts Gitea for the test and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	if fi, err := os.Stat(bin); err != nil || fi.Mode().Perm()&0o111 == 0 {
		msg := fmt.Sprintf("gitea binary %s is missing: run `make tools` (builds Gitea from source, about 6 minutes) or set SLUICE_TOOLS_DIR", bin)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	static, err := moduleDir()
	if err != nil {
		t.Fatalf("gitea: find its module directory for STATIC_ROOT_PATH: %v", err)
	}
	dir := t.TempDir()
	port := freePort(t)
	s := &Server{
		URL:    fmt.Sprintf("http://127.0.0.1:%d", port),
		dir:    dir,
		bin:    bin,
		config: filepath.Join(dir, "app.ini"),
		env: append(os.Environ(), "HOME="+dir, "GITEA_WORK_DIR="+dir, "USER=root",
			"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+filepath.Join(dir, "gitconfig")),
	}
	ini := fmt.Sprintf(`APP_NAME = sluice-test
RUN_MODE = prod
RUN_USER = root
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true
WORK_PATH = %[1]s

[database]
DB_TYPE = sqlite3
PATH = %[1]s/gitea.db
SQLITE_JOURNAL_MODE = WAL

[repository]
ROOT = %[1]s/repositories

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = %[2]d
ROOT_URL = %[3]s/
LOCAL_ROOT_URL = %[3]s/
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false
STATIC_ROOT_PATH = %[4]s
APP_DATA_PATH = %[1]s/data

[security]
INSTALL_LOCK = true
SECRET_KEY = %[5]s
INTERNAL_TOKEN = %[6]s
PASSWORD_HASH_ALGO = pbkdf2_hi

[oauth2]
ENABLED = false

[service]
DISABLE_REGISTRATION = true
DEFAULT_ALLOW_CREATE_ORGANIZATION = true

[mailer]
ENABLED = false

[session]
PROVIDER = memory

[cache]
ADAPTER = memory

[queue]
TYPE = channel

[indexer]
ISSUE_INDEXER_TYPE = db
REPO_INDEXER_ENABLED = false

[actions]
ENABLED = false

[cron]
ENABLED = false

[log]
MODE = file
LEVEL = Warn
ROOT_PATH = %[1]s/log
`, dir, port, s.URL, static, randToken(32), internalToken())
	if err := os.WriteFile(s.config, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	s.run(t, "migrate")
	adminPass := randToken(12)
	s.run(t, "admin", "user", "create", "--admin", "--username", "root", "--password", adminPass,
		"--email", "root@example.com", "--must-change-password=false")

	web := exec.Command(bin, "--config", s.config, "--work-path", dir, "web", "--port", fmt.Sprint(port))
	web.Env = s.env
	web.Dir = dir
	var out bytes.Buffer
	web.Stdout, web.Stderr = &out, &out
	if err := web.Start(); err != nil {
		t.Fatalf("start gitea web: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- web.Wait() }()
	t.Cleanup(func() {
		_ = web.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("gitea web output:\n%s", out.String())
			if b, err := os.ReadFile(filepath.Join(dir, "log", "gitea.log")); err == nil {
				t.Logf("gitea.log:\n%s", b)
			}
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get(s.URL + "/api/v1/version")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("gitea web exited: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gitea web did not answer on %s within 2 minutes:\n%s", s.URL, out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.Admin = s.client(t, sdk.SetBasicAuth("root", adminPass))
	return s
}

func (s *Server) run(t testing.TB, args ...string) {
	t.Helper()
	cmd := exec.Command(s.bin, append([]string{"--config", s.config, "--work-path", s.dir}, args...)...)
	cmd.Env = s.env
	cmd.Dir = s.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gitea %s: %v\n%s", args[0], err, out)
	}
}

func (s *Server) client(t testing.TB, opts ...sdk.ClientOption) *sdk.Client {
	t.Helper()
	// A binary built with go build calls itself "development", which the
	// SDK's version checks refuse: skip them.
	c, err := sdk.NewClient(s.URL, append([]sdk.ClientOption{sdk.SetGiteaVersion("")}, opts...)...)
	if err != nil {
		t.Fatalf("gitea client: %v", err)
	}
	return c
}

// User is a Gitea user with an API token.
type User struct {
	Name, Password, Token string
	// Client acts as the user, with the token.
	Client *sdk.Client
}

// CreateUser makes a user and a token for it with the given scopes
// (e.g. "write:repository").
func (s *Server) CreateUser(t testing.TB, name string, scopes ...string) *User {
	t.Helper()
	u := &User{Name: name, Password: randToken(12)}
	no := false
	if _, _, err := s.Admin.AdminCreateUser(sdk.CreateUserOption{
		Username: name, Email: name + "@example.com", Password: u.Password, MustChangePassword: &no,
	}); err != nil {
		t.Fatalf("create user %s: %v", name, err)
	}
	basic := s.client(t, sdk.SetBasicAuth(name, u.Password))
	var sc []sdk.AccessTokenScope
	for _, x := range scopes {
		sc = append(sc, sdk.AccessTokenScope(x))
	}
	tok, _, err := basic.CreateAccessToken(sdk.CreateAccessTokenOption{Name: "test", Scopes: sc})
	if err != nil {
		t.Fatalf("create token of %s: %v", name, err)
	}
	u.Token = tok.Token
	u.Client = s.client(t, sdk.SetToken(u.Token))
	return u
}

// CloneURL is the repository's HTTP address, without credentials.
func (s *Server) CloneURL(owner, repo string) string {
	return s.URL + "/" + owner + "/" + repo + ".git"
}

// GitAuth is git's -c option that authenticates as u over HTTP with its
// token, so that no credential is written into a URL or a remote.
func (u *User) GitAuth() string {
	return "http.extraHeader=Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(u.Name+":"+u.Token))
}

// moduleDir is Gitea's module directory (templates, options, public), which
// a binary built without the bindata tag reads at run time.
func moduleDir() (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "code.gitea.io/gitea")
	cmd.Dir = filepath.Join(repoRoot(), "test", "tools", "gitea")
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		return "", fmt.Errorf("%v: %s", err, stderr)
	}
	d := strings.TrimSpace(string(out))
	if d == "" {
		return "", fmt.Errorf("go list printed no directory (run `make tools`)")
	}
	return d, nil
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// internalToken is a JWT-shaped secret, as Gitea's INTERNAL_TOKEN wants.
func internalToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	h := base64.RawURLEncoding
	return h.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." +
		h.EncodeToString([]byte(fmt.Sprintf(`{"nbf":%d}`, time.Now().Unix()))) + "." + h.EncodeToString(b)
}
