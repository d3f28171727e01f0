package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-gitops/sluice/notify"
)

// withNotify is the good config with a notify: section at line 15.
func withNotify(section string) string { return good + "notify:\n" + section }

func TestNotifyDefaults(t *testing.T) {
	c, err := Parse("sluice.yaml", []byte(withNotify(`  - url: https://hooks.example.com/sluice
  - urlEnv: SLACK_URL
    format: slack
    on: [stopped]
    tokenFile: /var/run/secrets/hook
    tokenHeader: X-Hook-Token
`)))
	if err != nil {
		t.Fatal(err)
	}
	want := []Webhook{
		{URL: "https://hooks.example.com/sluice", Format: "json", On: []string{"failed", "stopped"}, line: 16},
		{URLEnv: "SLACK_URL", Format: "slack", On: []string{"stopped"}, TokenFile: "/var/run/secrets/hook", TokenHeader: "X-Hook-Token", line: 17},
	}
	if diff := cmp.Diff(want, c.Notify, cmp.AllowUnexported(Webhook{})); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

func TestNotifyRejectsBadInput(t *testing.T) {
	tests := []struct {
		name    string
		section string
		want    string
	}{
		{
			name:    "an unknown field names its path and line",
			section: "  - url: https://h.example.com/\n    fromat: slack\n",
			want:    "sluice.yaml:17: notify[0].fromat: unknown field",
		},
		{
			name:    "no url at all",
			section: "  - format: slack\n",
			want:    "sluice.yaml:16: notify[0].url: required: url, urlFile or urlEnv",
		},
		{
			name:    "the url named twice",
			section: "  - url: https://h.example.com/\n    urlEnv: HOOK\n",
			want:    "sluice.yaml:16: notify[0].url: url, urlFile and urlEnv: name the URL once",
		},
		{
			name:    "a url that is not http",
			section: "  - url: ftp://h.example.com/\n",
			want:    "sluice.yaml:16: notify[0].url: want an http:// or https:// URL",
		},
		{
			name:    "a relative url",
			section: "  - url: /hooks/sluice\n",
			want:    "sluice.yaml:16: notify[0].url: want an http:// or https:// URL",
		},
		{
			name:    "a url without a host",
			section: "  - url: 'https:///x'\n",
			want:    "sluice.yaml:16: notify[0].url: the URL has no host",
		},
		{
			name:    "credentials in the url are refused without being repeated",
			section: "  - url: https://bot:hunter2@h.example.com/\n",
			want:    "sluice.yaml:16: notify[0].url: the URL holds credentials; give them with tokenFile or tokenEnv",
		},
		{
			name:    "an unknown format",
			section: "  - url: https://h.example.com/\n    format: teams\n",
			want:    `sluice.yaml:16: notify[0].format: "teams": want json or slack`,
		},
		{
			name:    "an unknown kind",
			section: "  - url: https://h.example.com/\n    on: [failed, passed]\n",
			want:    `sluice.yaml:16: notify[0].on[1]: "passed": want failed or stopped`,
		},
		{
			name:    "a kind listed twice",
			section: "  - url: https://h.example.com/\n    on: [failed, failed]\n",
			want:    `sluice.yaml:16: notify[0].on[1]: "failed" is listed twice`,
		},
		{
			name:    "on as a single value",
			section: "  - url: https://h.example.com/\n    on: failed\n",
			want:    "sluice.yaml:17: notify[0].on: want a list",
		},
		{
			name:    "a token named twice",
			section: "  - url: https://h.example.com/\n    tokenFile: /t\n    tokenEnv: T\n",
			want:    "sluice.yaml:16: notify[0].tokenEnv: tokenFile and tokenEnv are both set; name the token once",
		},
		{
			name:    "a header without a token",
			section: "  - url: https://h.example.com/\n    tokenHeader: X-Token\n",
			want:    "sluice.yaml:16: notify[0].tokenHeader: needs tokenFile or tokenEnv",
		},
		{
			name:    "a header that is not a header name",
			section: "  - url: https://h.example.com/\n    tokenEnv: T\n    tokenHeader: 'X Token:'\n",
			want:    `sluice.yaml:16: notify[0].tokenHeader: "X Token:" is not an HTTP header name`,
		},
		{
			name:    "a bad variable name",
			section: "  - urlEnv: $HOOK\n",
			want:    "sluice.yaml:16: notify[0].urlEnv: want the name of an environment variable",
		},
		{
			name:    "the second webhook is named by its index and line",
			section: "  - url: https://h.example.com/\n  - url: https://h.example.com/\n    format: xml\n",
			want:    `sluice.yaml:17: notify[1].format: "xml": want json or slack`,
		},
		{
			name:    "notify as a mapping",
			section: "  url: https://h.example.com/\n",
			want:    "sluice.yaml:16: notify: want a list",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("sluice.yaml", []byte(withNotify(tt.section)))
			if err == nil {
				t.Fatal("accepted")
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got %s\nwant %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error repeats a secret: %s", err)
			}
		})
	}
}

func TestWebhooksReadTheirSecrets(t *testing.T) {
	dir := t.TempDir()
	urlFile := filepath.Join(dir, "url")
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(urlFile, []byte("https://hooks.slack.example/services/s3cr3t\n"), 0o600)
	os.WriteFile(tokenFile, []byte("t0ken-s3cr3t\n"), 0o600)
	t.Setenv("NOTIFY_TEST_URL", "http://receiver.example:8080/sluice?key=s3cr3t")
	t.Setenv("NOTIFY_TEST_TOKEN", "env-s3cr3t")
	c, err := Parse("sluice.yaml", []byte(withNotify(fmt.Sprintf(`  - urlFile: %s
    format: slack
    tokenFile: %s
  - urlEnv: NOTIFY_TEST_URL
    on: [failed]
    tokenEnv: NOTIFY_TEST_TOKEN
    tokenHeader: X-Token
`, urlFile, tokenFile))))
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Webhooks()
	if err != nil {
		t.Fatal(err)
	}
	want := []notify.Webhook{
		{Name: "notify[0] (hooks.slack.example)", URL: "https://hooks.slack.example/services/s3cr3t", Format: notify.Slack, On: []notify.Kind{notify.Failed, notify.Stopped}, Token: "t0ken-s3cr3t"},
		{Name: "notify[1] (receiver.example:8080)", URL: "http://receiver.example:8080/sluice?key=s3cr3t", Format: notify.JSON, On: []notify.Kind{notify.Failed}, Header: "X-Token", Token: "env-s3cr3t"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

func TestWebhooksErrorsNameTheSourceNotTheSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	badURL := write("bad-url", "https://bot:s3cr3t@hooks.example/x\n")
	ftpURL := write("ftp-url", "ftp://hooks.example/s3cr3t\n")
	empty := write("empty", "\n")
	big := write("big", strings.Repeat("s3cr3t", 20000))
	t.Setenv("NOTIFY_TEST_BAD_URL", "not a url s3cr3t")
	t.Setenv("NOTIFY_TEST_EMPTY", "")
	t.Setenv("NOTIFY_TEST_NEWLINE", "s3cr3t\nX-Injected: 1")
	tests := []struct {
		name    string
		section string
		want    string
	}{
		{"a url file holding credentials", "  - urlFile: " + badURL + "\n", "sluice.yaml:16: notify[0].urlFile: " + badURL + ": the URL holds credentials; give them with tokenFile or tokenEnv"},
		{"a url file that is not http", "  - urlFile: " + ftpURL + "\n", "sluice.yaml:16: notify[0].urlFile: " + ftpURL + ": want an http:// or https:// URL"},
		{"a missing url file", "  - urlFile: " + dir + "/none\n", "sluice.yaml:16: notify[0].urlFile: read " + dir + "/none: no such file or directory"},
		{"a url variable that is not a url", "  - urlEnv: NOTIFY_TEST_BAD_URL\n", "sluice.yaml:16: notify[0].urlEnv: $NOTIFY_TEST_BAD_URL: want an http:// or https:// URL"},
		{"an unset url variable", "  - urlEnv: NOTIFY_TEST_UNSET\n", "sluice.yaml:16: notify[0].urlEnv: environment variable NOTIFY_TEST_UNSET is not set"},
		{"an empty token file", "  - url: https://h.example/\n    tokenFile: " + empty + "\n", "sluice.yaml:16: notify[0].tokenFile: " + empty + " is empty"},
		{"a huge token file", "  - url: https://h.example/\n    tokenFile: " + big + "\n", "sluice.yaml:16: notify[0].tokenFile: " + big + " is larger than 65536 bytes"},
		{"an empty token variable", "  - url: https://h.example/\n    tokenEnv: NOTIFY_TEST_EMPTY\n", "sluice.yaml:16: notify[0].tokenEnv: environment variable NOTIFY_TEST_EMPTY is empty"},
		{"a token that would inject a header", "  - url: https://h.example/\n    tokenEnv: NOTIFY_TEST_NEWLINE\n", "sluice.yaml:16: notify[0].token: the token holds a line break or NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("sluice.yaml", []byte(withNotify(tt.section)))
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Webhooks()
			if err == nil {
				t.Fatal("accepted")
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got %s\nwant %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("the error holds the secret: %s", err)
			}
		})
	}
}
