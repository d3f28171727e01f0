package config

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sluice-gitops/sluice/notify"
)

// Webhook is one entry of `notify:`: where to post failed verdicts and
// stopped gates. The URL may be a secret (a Slack webhook's is), so it can
// come from a file or a variable; the token always does.
type Webhook struct {
	// URL, URLFile or URLEnv: exactly one names where to post (http or https).
	URL     string `yaml:"url"`
	URLFile string `yaml:"urlFile"`
	URLEnv  string `yaml:"urlEnv"`
	// Format is json (default) or slack.
	Format string `yaml:"format"`
	// On lists what is sent: failed, stopped (default both).
	On []string `yaml:"on"`
	// TokenFile or TokenEnv name a token sent in TokenHeader (as is), or
	// without TokenHeader as "Authorization: Bearer <token>".
	TokenFile   string `yaml:"tokenFile"`
	TokenEnv    string `yaml:"tokenEnv"`
	TokenHeader string `yaml:"tokenHeader"`

	line int
}

// UnmarshalYAML records the webhook's line.
func (w *Webhook) UnmarshalYAML(n *yaml.Node) error {
	type plain Webhook
	if err := n.Decode((*plain)(w)); err != nil {
		return err
	}
	w.line = n.Line
	return nil
}

var (
	envName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	headerName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]*$`)
)

// maxSecretFile bounds a URL or token file; a larger one is refused.
const maxSecretFile = 64 << 10

func (c *Config) validateNotify() error {
	for i := range c.Notify {
		w := &c.Notify[i]
		fail := func(field, msg string) error {
			return &Error{File: c.file, Line: w.line, Field: fmt.Sprintf("notify[%d].%s", i, field), Msg: msg}
		}
		set := 0
		for _, s := range []string{w.URL, w.URLFile, w.URLEnv} {
			if s != "" {
				set++
			}
		}
		switch {
		case set == 0:
			return fail("url", "required: url, urlFile or urlEnv")
		case set > 1:
			return fail("url", "url, urlFile and urlEnv: name the URL once")
		case w.URL != "":
			if err := checkURL(w.URL); err != nil {
				return fail("url", err.Error())
			}
		case w.URLEnv != "" && !envName.MatchString(w.URLEnv):
			return fail("urlEnv", "want the name of an environment variable")
		}
		switch notify.Format(w.Format) {
		case "":
			w.Format = string(notify.JSON)
		case notify.JSON, notify.Slack:
		default:
			return fail("format", fmt.Sprintf("%q: want json or slack", w.Format))
		}
		if len(w.On) == 0 {
			w.On = []string{string(notify.Failed), string(notify.Stopped)}
		}
		for j, k := range w.On {
			switch notify.Kind(k) {
			case notify.Failed, notify.Stopped:
			default:
				return fail(fmt.Sprintf("on[%d]", j), fmt.Sprintf("%q: want failed or stopped", k))
			}
			if slices.Contains(w.On[:j], k) {
				return fail(fmt.Sprintf("on[%d]", j), fmt.Sprintf("%q is listed twice", k))
			}
		}
		switch {
		case w.TokenFile != "" && w.TokenEnv != "":
			return fail("tokenEnv", "tokenFile and tokenEnv are both set; name the token once")
		case w.TokenEnv != "" && !envName.MatchString(w.TokenEnv):
			return fail("tokenEnv", "want the name of an environment variable")
		case w.TokenHeader != "" && w.TokenFile == "" && w.TokenEnv == "":
			return fail("tokenHeader", "needs tokenFile or tokenEnv")
		case w.TokenHeader != "" && !headerName.MatchString(w.TokenHeader):
			return fail("tokenHeader", fmt.Sprintf("%q is not an HTTP header name", w.TokenHeader))
		}
	}
	return nil
}

// checkURL accepts an absolute http or https URL without credentials. Its
// errors never quote the URL: it may be a secret.
func checkURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return errors.New("not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("want an http:// or https:// URL")
	case u.Host == "" || u.Hostname() == "":
		return errors.New("the URL has no host")
	case u.User != nil:
		return errors.New("the URL holds credentials; give them with tokenFile or tokenEnv")
	case u.Fragment != "":
		return errors.New("the URL has a #fragment, which is never sent")
	}
	return nil
}

// Webhooks reads the URLs and tokens the `notify:` entries name and returns
// the webhooks to post to. Errors name the file, line and field, and the
// file or variable, never a value.
func (c *Config) Webhooks() ([]notify.Webhook, error) {
	out := make([]notify.Webhook, 0, len(c.Notify))
	for i, w := range c.Notify {
		fail := func(field string, err error) error {
			return &Error{File: c.file, Line: w.line, Field: fmt.Sprintf("notify[%d].%s", i, field), Msg: err.Error()}
		}
		hook := notify.Webhook{URL: w.URL, Format: notify.Format(w.Format), Header: w.TokenHeader}
		for _, k := range w.On {
			hook.On = append(hook.On, notify.Kind(k))
		}
		var err error
		switch {
		case w.URLFile != "":
			if hook.URL, err = secretFile(w.URLFile); err != nil {
				return nil, fail("urlFile", err)
			}
			if err := checkURL(hook.URL); err != nil {
				return nil, fail("urlFile", fmt.Errorf("%s: %w", w.URLFile, err))
			}
		case w.URLEnv != "":
			if hook.URL, err = secretEnv(w.URLEnv); err != nil {
				return nil, fail("urlEnv", err)
			}
			if err := checkURL(hook.URL); err != nil {
				return nil, fail("urlEnv", fmt.Errorf("$%s: %w", w.URLEnv, err))
			}
		}
		switch {
		case w.TokenFile != "":
			if hook.Token, err = secretFile(w.TokenFile); err != nil {
				return nil, fail("tokenFile", err)
			}
		case w.TokenEnv != "":
			if hook.Token, err = secretEnv(w.TokenEnv); err != nil {
				return nil, fail("tokenEnv", err)
			}
		}
		if strings.ContainsAny(hook.Token, "\r\n\x00") {
			return nil, fail("token", errors.New("the token holds a line break or NUL"))
		}
		u, _ := url.Parse(hook.URL)
		hook.Name = fmt.Sprintf("notify[%d] (%s)", i, u.Host)
		out = append(out, hook)
	}
	return out, nil
}

// secretFile reads a small file holding one value; a trailing newline is
// dropped. Errors name the path, never the content.
func secretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return "", fmt.Errorf("read %s: %w", path, pe.Err)
		}
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("%s is larger than %d bytes", path, maxSecretFile)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return v, nil
}

func secretEnv(name string) (string, error) {
	v, ok := os.LookupEnv(name)
	switch {
	case !ok:
		return "", fmt.Errorf("environment variable %s is not set", name)
	case v == "":
		return "", fmt.Errorf("environment variable %s is empty", name)
	}
	return v, nil
}
