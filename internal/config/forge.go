package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Forge is the `forge:` section: where Sluice posts a commit status per
// queued commit and gate. The token is named by file or variable, never
// written here.
type Forge struct {
	// Type is gitea, github or gitlab.
	Type string `yaml:"type"`
	// URL is the forge's address: the server's root for Gitea and GitLab,
	// the API's root for GitHub. GitHub and GitLab default to the public
	// services; Gitea has no default.
	URL string `yaml:"url"`
	// Repository is owner/name on the forge. When empty it is the path of
	// repository.url (https://host/owner/name.git, ssh://…, git@host:…).
	Repository string `yaml:"repository"`
	TokenFile  string `yaml:"tokenFile"`
	TokenEnv   string `yaml:"tokenEnv"`

	line int
}

// Forge defaults.
const (
	DefaultGitHubURL = "https://api.github.com"
	DefaultGitLabURL = "https://gitlab.com"
)

// UnmarshalYAML records the section's line.
func (f *Forge) UnmarshalYAML(n *yaml.Node) error {
	type plain Forge
	if err := n.Decode((*plain)(f)); err != nil {
		return err
	}
	f.line = n.Line
	return nil
}

var (
	repoPath = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$`)
)

func (c *Config) validateForge() error {
	g := c.Forge
	if g == nil {
		return nil
	}
	fail := func(field, msg string) error {
		return &Error{File: c.file, Line: g.line, Field: "forge." + field, Msg: msg}
	}
	switch g.Type {
	case "":
		return fail("type", "required: gitea, github or gitlab")
	case "gitea", "github", "gitlab":
	default:
		return fail("type", fmt.Sprintf("%q: want gitea, github or gitlab", g.Type))
	}
	if g.URL == "" {
		switch g.Type {
		case "github":
			g.URL = DefaultGitHubURL
		case "gitlab":
			g.URL = DefaultGitLabURL
		default:
			return fail("url", "required for gitea: the server's address, e.g. https://gitea.example.com")
		}
	}
	u, err := url.Parse(g.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" {
		return fail("url", "want an http(s) address without credentials or query, e.g. https://gitea.example.com")
	}
	g.URL = strings.TrimSuffix(g.URL, "/")
	if g.Repository == "" {
		r, ok := repositoryFromURL(c.Repository.URL)
		if !ok {
			return fail("repository", fmt.Sprintf("required: owner/name on the forge (it cannot be read from repository.url %q)", redactURL(c.Repository.URL)))
		}
		g.Repository = r
	}
	if !repoPath.MatchString(g.Repository) || strings.Contains(g.Repository, "..") {
		return fail("repository", fmt.Sprintf("%q: want owner/name", g.Repository))
	}
	if g.Type != "gitlab" && strings.Count(g.Repository, "/") != 1 {
		return fail("repository", fmt.Sprintf("%q: want owner/name (only GitLab has subgroups)", g.Repository))
	}
	switch {
	case g.TokenFile == "" && g.TokenEnv == "":
		return fail("tokenFile", "a token is required: name its file (tokenFile) or environment variable (tokenEnv)")
	case g.TokenFile != "" && g.TokenEnv != "":
		return fail("tokenEnv", "tokenFile and tokenEnv are both set; name the token once")
	case g.TokenEnv != "" && !envName.MatchString(g.TokenEnv):
		return fail("tokenEnv", fmt.Sprintf("%q is not an environment variable name", g.TokenEnv))
	}
	if g.TokenFile != "" && !filepath.IsAbs(g.TokenFile) {
		g.TokenFile = filepath.Join(filepath.Dir(c.file), g.TokenFile)
	}
	return nil
}

// Token reads the forge's token from its file or variable. Errors name
// the file or variable, never a value; a trailing newline is dropped.
func (f *Forge) Token() (string, error) {
	if f.TokenEnv != "" {
		v, ok := os.LookupEnv(f.TokenEnv)
		if !ok || strings.TrimSpace(v) == "" {
			return "", fmt.Errorf("forge.tokenEnv: environment variable %s is not set or empty", f.TokenEnv)
		}
		return strings.TrimSpace(v), nil
	}
	b, err := os.ReadFile(f.TokenFile)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Errorf("forge.tokenFile: read %s: %w", f.TokenFile, err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("forge.tokenFile: %s is empty", f.TokenFile)
	}
	return t, nil
}

// repositoryFromURL reads owner/name from a Git URL's path:
// https://host/owner/name(.git), ssh://git@host/owner/name, git@host:owner/name.
func repositoryFromURL(raw string) (string, bool) {
	p := ""
	if u, err := url.Parse(raw); err == nil && u.Scheme != "" && u.Host != "" {
		p = u.Path
	} else if _, rest, ok := strings.Cut(raw, ":"); ok && !strings.Contains(raw, "://") {
		p = rest
	}
	p = strings.TrimSuffix(strings.Trim(p, "/"), ".git")
	if !repoPath.MatchString(p) {
		return "", false
	}
	return p, true
}

// redactURL drops any user information from a URL for a message.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		u.User = nil
		return u.String()
	}
	return raw
}
