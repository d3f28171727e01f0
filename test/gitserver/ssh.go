package gitserver

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSH serves a Server's repositories over SSH on a loopback port, the way a
// Git host does: public-key authentication only, and a session may only exec
// git-upload-pack or git-receive-pack on a repository under the Server's Root.
// Pushes run the same server hooks as over HTTP (ProtectBranches included).
type SSH struct {
	// Addr is the listener's address, 127.0.0.1:port.
	Addr string
	// KeyFile is an unencrypted OpenSSH private key (ed25519) the server
	// accepts. It is the only authorized key.
	KeyFile string
	// KnownHostsFile is a known_hosts file naming every host key of the server.
	KnownHostsFile string
	// HostKeys are the server's host public keys: ed25519 first, then ECDSA
	// P-256, so tests can write known_hosts files that name only one of them.
	HostKeys []ssh.PublicKey

	srv        *Server
	config     *ssh.ServerConfig
	authorized []byte // the authorized key, in wire format
	ln         net.Listener

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup

	authFailures atomic.Int64
	execs        atomic.Int64
}

// StartSSH starts an SSH server for s's repositories on 127.0.0.1 with an
// ephemeral port. It stops, closing every connection and waiting for every
// git process it started, when t's cleanup runs.
func (s *Server) StartSSH(t testing.TB) *SSH {
	t.Helper()
	dir := t.TempDir()
	h := &SSH{srv: s, conns: map[net.Conn]struct{}{}}

	// The client key, written as an OpenSSH private key file with mode 0600.
	h.KeyFile = filepath.Join(dir, "id_ed25519")
	clientPub := WriteSSHKey(t, h.KeyFile)
	h.authorized = clientPub.Marshal()

	h.config = &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if subtle.ConstantTimeCompare(key.Marshal(), h.authorized) == 1 {
				return &ssh.Permissions{}, nil
			}
			h.authFailures.Add(1)
			return nil, fmt.Errorf("gitserver: key %s is not authorized for %s", ssh.FingerprintSHA256(key), meta.User())
		},
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []any{edKey, ecKey} {
		signer, err := ssh.NewSignerFromKey(k)
		if err != nil {
			t.Fatal(err)
		}
		h.config.AddHostKey(signer)
		h.HostKeys = append(h.HostKeys, signer.PublicKey())
	}

	h.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.Addr = h.ln.Addr().String()
	h.KnownHostsFile = h.WriteKnownHosts(t, h.HostKeys...)

	logw := &logWriter{t: t, prefix: "gitserver: ssh: "}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.acceptLoop(logw)
	}()
	t.Cleanup(h.close)
	return h
}

// RepoURL returns the ssh:// clone URL of the repository name.
func (h *SSH) RepoURL(name string) string {
	return "ssh://git@" + h.Addr + "/" + repoName(name) + ".git"
}

// AuthFailures returns how many public keys the server has refused.
func (h *SSH) AuthFailures() int64 { return h.authFailures.Load() }

// Execs returns how many git commands the server has run for clients. A
// client that refused the host key never gets this far.
func (h *SSH) Execs() int64 { return h.execs.Load() }

// WriteKnownHosts writes a known_hosts file, in a fresh temporary directory,
// that names keys as the host keys of h's address, and returns its path.
func (h *SSH) WriteKnownHosts(t testing.TB, keys ...ssh.PublicKey) string {
	t.Helper()
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(knownhosts.Line([]string{knownhosts.Normalize(h.Addr)}, k))
		b.WriteByte('\n')
	}
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// WriteSSHKey writes a new, unencrypted ed25519 private key to path in
// OpenSSH format with mode 0600 and returns its public key.
func WriteSSHKey(t testing.TB, path string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sshPub
}

func (h *SSH) close() {
	h.ln.Close()
	h.mu.Lock()
	for c := range h.conns {
		c.Close()
	}
	h.mu.Unlock()
	h.wg.Wait()
}

func (h *SSH) acceptLoop(logw io.Writer) {
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return // closed
		}
		h.mu.Lock()
		h.conns[c] = struct{}{}
		h.mu.Unlock()
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			defer func() {
				h.mu.Lock()
				delete(h.conns, c)
				h.mu.Unlock()
				c.Close()
			}()
			h.serveConn(c, logw)
		}()
	}
}

func (h *SSH) serveConn(c net.Conn, logw io.Writer) {
	conn, chans, reqs, err := ssh.NewServerConn(c, h.config)
	if err != nil {
		return // handshake or authentication failed; the client sees why
	}
	defer conn.Close()
	go ssh.DiscardRequests(reqs)

	var sessions sync.WaitGroup
	defer sessions.Wait()
	for nch := range chans {
		if nch.ChannelType() != "session" {
			nch.Reject(ssh.UnknownChannelType, "gitserver: only session channels")
			continue
		}
		ch, chReqs, err := nch.Accept()
		if err != nil {
			continue
		}
		sessions.Add(1)
		go func() {
			defer sessions.Done()
			h.serveSession(ch, chReqs, logw)
		}()
	}
}

// serveSession handles one session: "env" requests for GIT_PROTOCOL, then
// one "exec" of a git service, whose exit status is sent back.
func (h *SSH) serveSession(ch ssh.Channel, reqs <-chan *ssh.Request, logw io.Writer) {
	defer ch.Close()
	var env []string
	for req := range reqs {
		switch req.Type {
		case "env":
			var kv struct{ Name, Value string }
			ok := ssh.Unmarshal(req.Payload, &kv) == nil && kv.Name == "GIT_PROTOCOL"
			if ok {
				env = append(env, "GIT_PROTOCOL="+kv.Value)
			}
			req.Reply(ok, nil)
		case "exec":
			var p struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &p); err != nil {
				req.Reply(false, nil)
				return
			}
			req.Reply(true, nil)
			go ssh.DiscardRequests(reqs)
			status := h.exec(ch, p.Command, env, logw)
			ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
			return
		default:
			req.Reply(false, nil)
		}
	}
}

// exec runs the git service named by command (git-upload-pack '/name.git'
// or git-receive-pack '/name.git') with the channel as its stdin and stdout,
// and returns its exit status.
func (h *SSH) exec(ch ssh.Channel, command string, env []string, logw io.Writer) uint32 {
	fail := func(format string, args ...any) uint32 {
		msg := fmt.Sprintf(format, args...)
		fmt.Fprintln(ch.Stderr(), msg)
		fmt.Fprintln(logw, msg)
		return 128
	}
	service, arg, _ := strings.Cut(command, " ")
	if service != "git-upload-pack" && service != "git-receive-pack" {
		return fail("gitserver: command %q is not allowed", command)
	}
	path, err := shellUnquote(arg)
	if err != nil {
		return fail("gitserver: %s: %v", command, err)
	}
	rel := filepath.Clean("/" + strings.TrimPrefix(path, "/"))[1:]
	if rel == "" || rel != strings.TrimPrefix(path, "/") {
		return fail("fatal: '%s' does not appear to be a git repository", path)
	}
	dir := filepath.Join(h.srv.Root, filepath.FromSlash(rel))
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fail("fatal: '%s' does not appear to be a git repository", path)
	}
	h.execs.Add(1)

	cmd := exec.Command("git", strings.TrimPrefix(service, "git-"), dir)
	cmd.Env = h.srv.env.with(env...).cmdEnv()
	cmd.Stdout = ch
	cmd.Stderr = io.MultiWriter(ch.Stderr(), logw)
	// Not cmd.Stdin = ch: Wait would then wait for the client to close its
	// side, which a client that has read all it needs never does.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fail("gitserver: %v", err)
	}
	if err := cmd.Start(); err != nil {
		return fail("gitserver: %v", err)
	}
	go func() {
		io.Copy(stdin, ch)
		stdin.Close()
	}()
	err = cmd.Wait()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exitErr):
		return uint32(exitErr.ExitCode())
	default:
		return fail("gitserver: %s: %v", service, err)
	}
}

// shellUnquote undoes the quoting Git clients put around the repository
// path: one single-quoted word, where ' is written '\” and ! is written '\!'.
// An unquoted word without shell metacharacters is accepted as is.
func shellUnquote(s string) (string, error) {
	if !strings.HasPrefix(s, "'") {
		if s == "" || strings.ContainsAny(s, " \t\n'\"\\$`;&|<>*?()[]{}~!") {
			return "", fmt.Errorf("bad repository path %q", s)
		}
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] != '\'' {
			return "", fmt.Errorf("bad quoting in %q", s)
		}
		end := strings.IndexByte(s[i+1:], '\'')
		if end < 0 {
			return "", fmt.Errorf("unterminated quote in %q", s)
		}
		b.WriteString(s[i+1 : i+1+end])
		i += end + 2
		if i < len(s) {
			if i+1 >= len(s) || s[i] != '\\' || (s[i+1] != '\'' && s[i+1] != '!') {
				return "", fmt.Errorf("bad quoting in %q", s)
			}
			b.WriteByte(s[i+1])
			i += 2
		}
	}
	return b.String(), nil
}
