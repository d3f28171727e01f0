package gitrepo

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
)

// Credentials are resolved secrets for the remote. Their String, GoString,
// LogValue, MarshalJSON and MarshalYAML never show a secret, so a
// Credentials that ends up in a log line, an error or a dump by mistake
// leaks nothing.
type Credentials struct {
	// Username and Password are HTTP basic auth; a token goes in Password
	// (Username then defaults to "git", which Git hosts accept for tokens).
	Username string
	Password string

	// SSHKey is a PEM private key, SSHKeyPassphrase its passphrase if encrypted.
	SSHKey           []byte
	SSHKeyPassphrase string
	// KnownHosts is the path of a known_hosts file. Empty means the SSH
	// defaults ($SSH_KNOWN_HOSTS or ~/.ssh/known_hosts), unless
	// InsecureIgnoreHostKey is set.
	KnownHosts string
	// InsecureIgnoreHostKey skips SSH host key verification. Only for tests
	// and only when asked for explicitly.
	InsecureIgnoreHostKey bool
}

// String describes which credentials are set, never their values.
func (c Credentials) String() string {
	set := func(ok bool) string {
		if ok {
			return "set"
		}
		return "unset"
	}
	return fmt.Sprintf("Credentials{Username: %q, Password: %s, SSHKey: %s, SSHKeyPassphrase: %s, KnownHosts: %q, InsecureIgnoreHostKey: %t}",
		c.Username, set(c.Password != ""), set(len(c.SSHKey) > 0), set(c.SSHKeyPassphrase != ""), c.KnownHosts, c.InsecureIgnoreHostKey)
}

// GoString is String, so %#v does not print secrets either.
func (c Credentials) GoString() string { return c.String() }

// LogValue is String, for log/slog.
func (c Credentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

// MarshalJSON is String as a JSON string: encoding/json would otherwise
// write every field, secrets included.
func (c Credentials) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// MarshalYAML is String, for the same reason.
func (c Credentials) MarshalYAML() (any, error) { return c.String(), nil }

// CredentialsSource is what the configuration names: files and environment
// variables holding the secrets, never the secrets themselves.
type CredentialsSource struct {
	Username            string `yaml:"username"`
	UsernameEnv         string `yaml:"usernameEnv"`
	PasswordFile        string `yaml:"passwordFile"`
	PasswordEnv         string `yaml:"passwordEnv"`
	SSHKeyFile          string `yaml:"sshKeyFile"`
	SSHKeyPassphraseEnv string `yaml:"sshKeyPassphraseEnv"`
	KnownHostsFile      string `yaml:"knownHostsFile"`
	// InsecureIgnoreHostKey skips SSH host key verification.
	InsecureIgnoreHostKey bool `yaml:"insecureIgnoreHostKey"`
}

// Resolve reads the files and variables s names. Errors name the file or the
// variable, never a value. A trailing newline in a password file is dropped.
func (s CredentialsSource) Resolve() (*Credentials, error) {
	c := &Credentials{
		Username:              s.Username,
		KnownHosts:            s.KnownHostsFile,
		InsecureIgnoreHostKey: s.InsecureIgnoreHostKey,
	}
	if s.Username != "" && s.UsernameEnv != "" {
		return nil, errors.New("credentials: username and usernameEnv are both set")
	}
	if s.PasswordFile != "" && s.PasswordEnv != "" {
		return nil, errors.New("credentials: passwordFile and passwordEnv are both set")
	}
	var err error
	if s.UsernameEnv != "" {
		if c.Username, err = fromEnv(s.UsernameEnv); err != nil {
			return nil, err
		}
	}
	if s.PasswordEnv != "" {
		if c.Password, err = fromEnv(s.PasswordEnv); err != nil {
			return nil, err
		}
	}
	if s.PasswordFile != "" {
		b, err := readSecretFile(s.PasswordFile)
		if err != nil {
			return nil, err
		}
		c.Password = strings.TrimRight(string(b), "\r\n")
		if c.Password == "" {
			return nil, fmt.Errorf("credentials: password file %s is empty", s.PasswordFile)
		}
	}
	if s.SSHKeyFile != "" {
		if c.SSHKey, err = readSecretFile(s.SSHKeyFile); err != nil {
			return nil, err
		}
		if len(c.SSHKey) == 0 {
			return nil, fmt.Errorf("credentials: SSH key file %s is empty", s.SSHKeyFile)
		}
	}
	if s.SSHKeyPassphraseEnv != "" {
		if s.SSHKeyFile == "" {
			return nil, errors.New("credentials: sshKeyPassphraseEnv is set without sshKeyFile")
		}
		if c.SSHKeyPassphrase, err = fromEnv(s.SSHKeyPassphraseEnv); err != nil {
			return nil, err
		}
	}
	if s.KnownHostsFile != "" {
		if _, err := os.Stat(s.KnownHostsFile); err != nil {
			return nil, fmt.Errorf("credentials: known hosts file: %w", err)
		}
	}
	return c, nil
}

func fromEnv(name string) (string, error) {
	v, ok := os.LookupEnv(name)
	if !ok {
		return "", fmt.Errorf("credentials: environment variable %s is not set", name)
	}
	if v == "" {
		return "", fmt.Errorf("credentials: environment variable %s is empty", name)
	}
	return v, nil
}

// readSecretFile reads a file; its errors (from os) name the path only.
func readSecretFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("credentials: read %s: %w", path, pe.Err)
		}
		return nil, fmt.Errorf("credentials: read %s: %w", path, err)
	}
	return b, nil
}

// authMethod builds go-git's auth for the endpoint's protocol.
func authMethod(ep *transport.Endpoint, c *Credentials) (transport.AuthMethod, error) {
	if c == nil {
		c = &Credentials{}
	}
	switch ep.Protocol {
	case "http", "https":
		if c.Username == "" && c.Password == "" {
			return nil, nil
		}
		user := c.Username
		if user == "" {
			user = "git"
		}
		return &githttp.BasicAuth{Username: user, Password: c.Password}, nil
	case "ssh":
		user := ep.User
		if user == "" {
			user = c.Username
		}
		if user == "" {
			user = "git"
		}
		// The key is parsed first, so a bad key is reported before a
		// missing known_hosts file.
		var keys *gitssh.PublicKeys
		if len(c.SSHKey) > 0 {
			var err error
			keys, err = gitssh.NewPublicKeys(user, c.SSHKey, c.SSHKeyPassphrase)
			if err != nil {
				// The parser's error never holds the key, but keep only its kind.
				if strings.Contains(err.Error(), "passphrase") || strings.Contains(err.Error(), "decryption") {
					return nil, errors.New("SSH key: wrong or missing passphrase")
				}
				return nil, errors.New("SSH key: cannot parse private key")
			}
		}
		var hostKey gitssh.HostKeyCallbackHelper
		if c.InsecureIgnoreHostKey && c.KnownHosts == "" {
			hostKey.HostKeyCallback = ssh.InsecureIgnoreHostKey()
		} else {
			var files []string // none: $SSH_KNOWN_HOSTS, else ~/.ssh/known_hosts
			if c.KnownHosts != "" {
				files = []string{c.KnownHosts}
			}
			db, err := gitssh.NewKnownHostsDb(files...)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", knownHostsDescription(c), err)
			}
			hostKey.HostKeyCallback = db.HostKeyCallback()
			// Ask the server for the key types known_hosts lists for this
			// host, as OpenSSH does. Otherwise a server that also has a key
			// of another type may offer that one, and the check fails.
			hostKey.HostKeyAlgorithms = db.HostKeyAlgorithms(sshHostPort(ep))
		}
		if keys != nil {
			keys.HostKeyCallbackHelper = hostKey
			return keys, nil
		}
		a, err := gitssh.NewSSHAgentAuth(user)
		if err != nil {
			return nil, fmt.Errorf("ssh agent (no SSH key configured): %w", err)
		}
		a.HostKeyCallbackHelper = hostKey
		return a, nil
	default:
		return nil, nil
	}
}

// sshHostPort is the host:port under which known_hosts files list ep's host.
func sshHostPort(ep *transport.Endpoint) string {
	port := ep.Port
	if port <= 0 {
		port = 22
	}
	return net.JoinHostPort(ep.Host, strconv.Itoa(port))
}

// knownHostsDescription says which known_hosts files an SSH remote is
// checked against, for error messages.
func knownHostsDescription(c *Credentials) string {
	switch {
	case c != nil && c.KnownHosts != "":
		return "known hosts file " + c.KnownHosts
	case c != nil && c.InsecureIgnoreHostKey:
		return "host key checking is off"
	default:
		return "known hosts from $SSH_KNOWN_HOSTS or ~/.ssh/known_hosts"
	}
}

// scrubber removes secrets from error text.
type scrubber struct {
	secrets []string
}

func newScrubber(rawURL string, c *Credentials) scrubber {
	var s scrubber
	add := func(v string) {
		if v == "" {
			return
		}
		s.secrets = append(s.secrets, v, url.QueryEscape(v), url.PathEscape(v))
	}
	if c != nil {
		add(c.Password)
		add(c.SSHKeyPassphrase)
		if c.Password != "" {
			user := c.Username
			if user == "" {
				user = "git"
			}
			add(base64.StdEncoding.EncodeToString([]byte(user + ":" + c.Password)))
		}
	}
	if u, err := url.Parse(rawURL); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok {
			add(p)
		}
	}
	return s
}

// userinfoRE matches the password part of scheme://user:password@ in text.
var userinfoRE = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*):[^/@\s]*@`)

func (s scrubber) scrub(text string) string {
	for _, v := range s.secrets {
		text = strings.ReplaceAll(text, v, "***")
	}
	return userinfoRE.ReplaceAllString(text, "$1:***@")
}

// redactURL returns rawURL with any userinfo password replaced.
func redactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		return userinfoRE.ReplaceAllString(rawURL, "$1:***@")
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "***")
		return strings.Replace(u.String(), "%2A%2A%2A", "***", 1)
	}
	return u.String()
}
