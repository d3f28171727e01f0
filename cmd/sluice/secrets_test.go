package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/internal/config"
	"github.com/sluice-gitops/sluice/manifests"
	"github.com/sluice-gitops/sluice/test/gitserver"
)

// fakeVerdictKey is the verdict key the stand-in cluster's Secret holds.
var fakeVerdictKey = strings.Repeat("verdict-key/", 3)

const verdictKeyPath = "/api/v1/namespaces/sluice-system/secrets/sluice-verdict-key"

const (
	gitUser  = "sluice"
	tokenEnv = "SLUICE_SECRETS_TEST_TOKEN"
)

// secretsFixture is a Git server with basic auth holding a desired-state
// repository, a stand-in Kubernetes API, and the files a sluice run needs.
type secretsFixture struct {
	srv        *gitserver.Server
	work       *gitserver.Work
	token      string // the right password
	kube       *fakeKube
	kubeconfig string
	dir        string
}

func newSecretsFixture(t *testing.T) *secretsFixture {
	t.Helper()
	token := "tok-" + randomHex(t) + "-secret"
	f := newRepoFixture(t, gitserver.Options{Username: gitUser, Password: token})
	f.token = token
	return f
}

// newRepoFixture is a Git server started with opts, holding "desired" with
// one environment whose commit is already passed, and the stand-in cluster.
func newRepoFixture(t *testing.T, opts gitserver.Options) *secretsFixture {
	t.Helper()
	f := &secretsFixture{dir: t.TempDir()}
	f.srv = gitserver.Start(t, opts)
	f.srv.CreateRepo(t, "desired")
	f.work = f.srv.Clone(t, "desired")
	f.work.Write(t, "environments/staging/kustomization.yaml", "resources:\n  - web.yaml\n")
	f.work.Write(t, "environments/staging/web.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  version: v1\n")
	initial := f.work.Commit(t, "initial")
	if err := f.work.Push(t, "HEAD:refs/heads/main", "HEAD:refs/heads/staging"); err != nil {
		t.Fatal(err)
	}
	// An earlier run passed staging's commit: later candidates that render
	// the same pass without a cluster.
	objs, err := manifests.Render(t.Context(), os.DirFS(f.work.Dir), "environments/staging", manifests.RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := gitrepo.NewVerdictKey([]byte(fakeVerdictKey))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := key.SignRecord(plumbing.NewHash(initial), gitrepo.Record{Gate: "staging", Verdict: gitrepo.VerdictPassed, Digest: manifests.Digest(objs)})
	if err != nil {
		t.Fatal(err)
	}
	note := gitrepo.EncodeNote(gitrepo.Note{Records: []gitrepo.Record{rec}})
	f.work.Git(t, "notes", "--ref=sluice", "add", "-m", string(note), initial)
	if err := f.work.Push(t, "refs/notes/sluice:refs/notes/sluice"); err != nil {
		t.Fatal(err)
	}
	f.kube = startFakeKube(t)
	f.kubeconfig = filepath.Join(f.dir, "kubeconfig")
	writeFile(t, f.kubeconfig, fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
  - name: fake
    cluster: {server: %q}
users:
  - name: fake
    user: {token: kube-token}
contexts:
  - name: fake
    context: {cluster: fake, user: fake}
current-context: fake
`, f.kube.URL))
	return f
}

// stagingGate is the config's gates section for the fixture's repository.
const stagingGate = `gates:
  - name: staging
    path: environments/staging
    targetBranch: staging
    retry:
      initialBackoff: 10ms
      maxBackoff: 20ms
      onceAttempts: 2
`

// config writes a config file whose credentials are given by creds (YAML
// lines under credentials:) and returns its path.
func (f *secretsFixture) config(t *testing.T, creds string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sluice.yaml")
	writeFile(t, p, fmt.Sprintf("repository:\n  url: %s\n  credentials:\n    username: %s\n%s\n", f.srv.RepoURL("desired"), gitUser, creds)+stagingGate)
	return p
}

// credentialSources are the two ways a config names the password.
func credentialSources(t *testing.T, password string) map[string]string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "git-token")
	writeFile(t, file, password+"\n")
	return map[string]string{
		"passwordEnv":  "    passwordEnv: " + tokenEnv,
		"passwordFile": "    passwordFile: " + file,
	}
}

// sluice runs the CLI in-process and returns its exit code and output.
func sluice(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	code = run(ctx, args, &out, &errb)
	t.Logf("sluice %s: exit %d\n--- stdout\n%s--- stderr\n%s", strings.Join(args[:min(len(args), 1)], ""), code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

// forms are the ways a secret could show up in text: as is, or in a basic
// auth header.
func forms(secret string) []string {
	return []string{
		secret,
		base64.StdEncoding.EncodeToString([]byte(gitUser + ":" + secret)),
		base64.StdEncoding.EncodeToString([]byte(secret)),
	}
}

func assertNoSecret(t *testing.T, where, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		for _, f := range forms(s) {
			if strings.Contains(text, f) {
				t.Errorf("%s holds a secret (%q):\n%s", where, f, text)
			}
		}
	}
}

// TestWrongTokenFailsWithoutShowingIt: with a wrong password, status and
// run --once fail, saying the server refused the credentials, and neither
// the password given nor the right one appears in their output, go-git's
// error text included.
func TestWrongTokenFailsWithoutShowingIt(t *testing.T) {
	f := newSecretsFixture(t)
	wrong := "wrong-" + randomHex(t) + "-token"
	for name, creds := range credentialSources(t, wrong) {
		t.Run(name, func(t *testing.T) {
			t.Setenv(tokenEnv, wrong)
			cfg := f.config(t, creds)
			for _, args := range [][]string{
				{"status", "--config", cfg},
				{"status", "--config", cfg, "--output", "json"},
				{"run", "--once", "--config", cfg, "--kubeconfig", f.kubeconfig, "--log-level", "debug", "--progress", "always"},
				{"run", "--once", "--config", cfg, "--kubeconfig", f.kubeconfig, "--log-format", "json"},
			} {
				code, stdout, stderr := sluice(t, args...)
				if code == 0 {
					t.Errorf("sluice %s exited 0 with a wrong password", strings.Join(args, " "))
				}
				if all := stdout + stderr; !strings.Contains(all, "authentication") && !strings.Contains(all, "401") {
					t.Errorf("sluice %s does not say the server refused the credentials", args[0])
				}
				assertNoSecret(t, "sluice "+strings.Join(args, " "), stdout+stderr, wrong, f.token)
			}
		})
	}
	if n := f.kube.requestCount(); n != 0 {
		t.Errorf("the cluster was called %d times though Git refused the credentials", n)
	}
}

// TestRightTokenNeverWrittenAnywhere: a run --once with the right password
// that fails a commit and reverts it leaves the password in no note, commit
// message, log line or progress line, and never sends it to the cluster.
// The run is the real CLI; the cluster is a stand-in API server that only
// answers what a run needs when no candidate reaches the cluster (the
// broken commit fails at the render and its revert renders what was
// already passed).
func TestRightTokenNeverWrittenAnywhere(t *testing.T) {
	for _, name := range []string{"passwordEnv", "passwordFile"} {
		t.Run(name, func(t *testing.T) {
			f := newSecretsFixture(t)
			t.Setenv(tokenEnv, f.token)
			creds := credentialSources(t, f.token)[name]
			f.work.Write(t, "environments/staging/kustomization.yaml", "resources:\n  - web.yaml\n  - missing.yaml\n")
			bad := f.work.Commit(t, "add a resource that is not there")
			if err := f.work.Push(t, "HEAD:refs/heads/main"); err != nil {
				t.Fatal(err)
			}
			cfg := f.config(t, creds)
			code, stdout, stderr := sluice(t, "run", "--once", "--config", cfg, "--kubeconfig", f.kubeconfig, "--log-level", "debug", "--progress", "always")
			if code != 0 {
				t.Fatalf("run --once exited %d", code)
			}
			_, statusOut, statusErr := sluice(t, "status", "--config", cfg)
			_, jsonOut, jsonErr := sluice(t, "status", "--config", cfg, "--output", "json")

			f.work.Git(t, "fetch", "-q", "origin", "+refs/heads/*:refs/remotes/origin/*", "+refs/notes/*:refs/notes/*")
			note := f.work.Git(t, "notes", "--ref=sluice", "show", bad)
			if !strings.Contains(note, "verdict: failed") || !strings.Contains(note, "missing.yaml") {
				t.Errorf("the broken commit's note:\n%s\nwant failed because of missing.yaml", note)
			}
			if got := f.work.Git(t, "log", "-1", "--format=%(trailers:key=Sluice-Rejected,valueonly)", "origin/main"); got != bad {
				t.Errorf("main's tip rejects %q, want the broken commit %s", got, bad)
			}
			for where, text := range map[string]string{
				"stdout of run":     stdout,
				"stderr of run":     stderr,
				"status":            statusOut + statusErr,
				"status json":       jsonOut + jsonErr,
				"the notes":         f.work.Git(t, "log", "-p", "refs/notes/sluice"),
				"commit messages":   f.work.Git(t, "log", "--format=%an %ae%n%B", "origin/main", "origin/staging"),
				"the cluster calls": f.kube.requests(),
			} {
				assertNoSecret(t, where, text, f.token)
			}
			if f.kube.requestCount() == 0 {
				t.Error("the run never called the cluster; the test would not see a leak there")
			}
		})
	}
}

// TestCredentialsNeverPrinted: whatever verb prints the credentials, or a
// repository opened with them, the secrets do not show.
func TestCredentialsNeverPrinted(t *testing.T) {
	password := "pw-" + randomHex(t) + "-secret"
	passphrase := "pass-" + randomHex(t) + "-phrase"
	t.Setenv(tokenEnv, password)
	t.Setenv(tokenEnv+"_PASSPHRASE", passphrase)
	key := filepath.Join(t.TempDir(), "id")
	writeFile(t, key, "-----BEGIN OPENSSH PRIVATE KEY-----\nkey-"+randomHex(t)+"\n-----END OPENSSH PRIVATE KEY-----\n")
	keyText, _ := os.ReadFile(key)
	src := gitrepo.CredentialsSource{Username: gitUser, PasswordEnv: tokenEnv, SSHKeyFile: key, SSHKeyPassphraseEnv: tokenEnv + "_PASSPHRASE"}
	creds, err := src.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if creds.Password != password || creds.SSHKeyPassphrase != passphrase || string(creds.SSHKey) != string(keyText) {
		t.Fatal("Resolve did not read the secrets; the test would prove nothing")
	}
	httpCreds := &gitrepo.Credentials{Username: gitUser, Password: password}
	repo, err := gitrepo.Open(t.Context(), gitrepo.Options{URL: "https://git.example.com/desired.git", Credentials: httpCreds})
	if err != nil {
		t.Fatal(err)
	}
	opts := gitrepo.Options{URL: "https://git.example.com/desired.git", Credentials: creds}
	values := map[string]any{
		"*Credentials":      creds,
		"Credentials":       *creds,
		"Options":           opts,
		"*Options":          &opts,
		"*Repository":       repo,
		"a struct of them":  struct{ C gitrepo.Credentials }{*creds},
		"CredentialsSource": src,
	}
	secrets := []string{password, passphrase, strings.TrimSpace(string(keyText))}
	for name, v := range values {
		t.Run(name, func(t *testing.T) {
			var text bytes.Buffer
			fmt.Fprintf(&text, "%v %+v %#v %s\n", v, v, v, v)
			slog.New(slog.NewTextHandler(&text, nil)).Info("m", "v", v)
			slog.New(slog.NewJSONHandler(&text, nil)).Info("m", "v", v)
			if b, err := json.Marshal(v); err == nil {
				text.Write(b)
			}
			assertNoSecret(t, name+" printed", text.String(), secrets...)
			for _, s := range secrets {
				for _, line := range strings.Split(s, "\n") {
					if len(line) > 8 && strings.Contains(text.String(), line) {
						t.Errorf("%s printed holds %q:\n%s", name, line, text.String())
					}
				}
			}
		})
	}

	// The config holds where the secrets are, never them.
	cfgFile := filepath.Join(t.TempDir(), "sluice.yaml")
	writeFile(t, cfgFile, "repository:\n  url: https://git.example.com/desired.git\n  credentials:\n    username: sluice\n    passwordEnv: "+tokenEnv+"\ngates:\n  - {name: staging, path: environments/staging, targetBranch: staging}\n")
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, "the config printed", fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg), password)
}

// fakeKube is a stand-in Kubernetes API server that answers discovery and
// the list of a gate's namespaces (empty), and records every request.
type fakeKube struct {
	*httptest.Server
	mu  sync.Mutex
	log bytes.Buffer
	n   int
}

func startFakeKube(t *testing.T) *fakeKube {
	t.Helper()
	k := &fakeKube{}
	k.Server = httptest.NewServer(http.HandlerFunc(k.serve))
	t.Cleanup(k.Close)
	return k
}

func (k *fakeKube) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	k.mu.Lock()
	if r.URL.Path != verdictKeyPath {
		k.n++ // reading the verdict key at start is not using the cluster
	}
	fmt.Fprintf(&k.log, "%s %s\n", r.Method, r.URL)
	for name, vs := range r.Header {
		fmt.Fprintf(&k.log, "%s: %s\n", name, strings.Join(vs, ", "))
	}
	fmt.Fprintf(&k.log, "\n%s\n\n", body)
	k.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api":
		io.WriteString(w, `{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1"}]}`)
	case r.Method == http.MethodGet && r.URL.Path == "/apis":
		io.WriteString(w, `{"kind":"APIGroupList","apiVersion":"v1","groups":[]}`)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1":
		io.WriteString(w, `{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"v1","resources":[{"name":"namespaces","singularName":"namespace","namespaced":false,"kind":"Namespace","verbs":["create","delete","get","list","patch","update","watch"]}]}`)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/namespaces":
		io.WriteString(w, `{"kind":"NamespaceList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}`)
	case r.Method == http.MethodGet && r.URL.Path == verdictKeyPath:
		// The verdict key an earlier start generated.
		fmt.Fprintf(w, `{"kind":"Secret","apiVersion":"v1","metadata":{"name":"sluice-verdict-key","namespace":"sluice-system"},"data":{"key":%q}}`, base64.StdEncoding.EncodeToString([]byte(fakeVerdictKey)))
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"the stand-in API server does not serve %s %s"}`, r.Method, r.URL.Path)
	}
}

func (k *fakeKube) requests() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.log.String()
}

func (k *fakeKube) requestCount() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.n
}

func writeFile(t *testing.T, name, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
