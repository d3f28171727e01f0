package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// withForge is a valid config whose repository is at repoURL, with forge
// as its last section.
func withForge(repoURL, forge string) string {
	return "repository:\n  url: " + repoURL + "\n" +
		"gates:\n  - name: staging\n    path: environments/staging\n    targetBranch: staging\n" +
		"forge:\n" + forge
}

func TestParseForge(t *testing.T) {
	tests := []struct {
		name    string
		repoURL string
		forge   string
		want    Forge
	}{
		{
			name:    "the repository is read from an https URL",
			repoURL: "https://gitea.example.com/platform/desired.git",
			forge:   "  type: gitea\n  url: https://gitea.example.com/\n  tokenEnv: GITEA_TOKEN\n",
			want:    Forge{Type: "gitea", URL: "https://gitea.example.com", Repository: "platform/desired", TokenEnv: "GITEA_TOKEN"},
		},
		{
			name:    "the repository is read from an scp-like SSH address and GitHub's API is the default",
			repoURL: "git@github.com:platform/desired.git",
			forge:   "  type: github\n  tokenFile: /run/secrets/gh\n",
			want:    Forge{Type: "github", URL: DefaultGitHubURL, Repository: "platform/desired", TokenFile: "/run/secrets/gh"},
		},
		{
			name:    "a GitLab project in a subgroup, from an ssh:// URL, token file next to the config",
			repoURL: "ssh://git@gitlab.example.com/platform/deploy/desired.git",
			forge:   "  type: gitlab\n  url: https://gitlab.example.com\n  tokenFile: gitlab-token\n",
			want:    Forge{Type: "gitlab", URL: "https://gitlab.example.com", Repository: "platform/deploy/desired", TokenFile: filepath.Join("/etc/sluice", "gitlab-token")},
		},
		{
			name:    "a repository given explicitly wins",
			repoURL: "/srv/git/desired.git",
			forge:   "  type: gitea\n  url: http://127.0.0.1:3000\n  repository: team/state\n  tokenEnv: T\n",
			want:    Forge{Type: "gitea", URL: "http://127.0.0.1:3000", Repository: "team/state", TokenEnv: "T"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("/etc/sluice/sluice.yaml", []byte(withForge(tt.repoURL, tt.forge)))
			if err != nil {
				t.Fatal(err)
			}
			got := *c.Forge
			got.line = 0
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(Forge{})); diff != "" {
				t.Errorf("forge (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseForgeRejectsBadInput(t *testing.T) {
	const httpsRepo = "https://gitea.example.com/platform/desired.git"
	tests := []struct {
		name    string
		repoURL string
		forge   string
		want    string
	}{
		{"an unknown field", httpsRepo, "  type: gitea\n  url: http://x\n  tokenEnv: T\n  tokn: x\n", "sluice.yaml:11: forge.tokn: unknown field"},
		{"no type", httpsRepo, "  url: http://x\n  tokenEnv: T\n", "sluice.yaml:8: forge.type: required"},
		{"an unknown type", httpsRepo, "  type: bitbucket\n  tokenEnv: T\n", `forge.type: "bitbucket": want gitea, github or gitlab`},
		{"gitea without url", httpsRepo, "  type: gitea\n  tokenEnv: T\n", "forge.url: required for gitea"},
		{"a url with credentials", httpsRepo, "  type: gitea\n  url: https://u:secret@gitea.example.com\n  tokenEnv: T\n", "forge.url: want an http(s) address without credentials"},
		{"a url that is no http", httpsRepo, "  type: gitea\n  url: ftp://gitea.example.com\n  tokenEnv: T\n", "forge.url: want an http(s) address"},
		{"no token", httpsRepo, "  type: github\n", "forge.tokenFile: a token is required"},
		{"two tokens", httpsRepo, "  type: github\n  tokenFile: t\n  tokenEnv: T\n", "forge.tokenEnv: tokenFile and tokenEnv are both set"},
		{"a bad variable name", httpsRepo, "  type: github\n  tokenEnv: 'A B'\n", `forge.tokenEnv: "A B" is not an environment variable name`},
		{"a repository that cannot be derived", "/srv/git/desired.git", "  type: gitea\n  url: http://x\n  tokenEnv: T\n", "forge.repository: required: owner/name"},
		{"a derived repository never shows the URL's password", "https://sluice:hunter2@gitea.example.com/x.git", "  type: gitea\n  url: http://x\n  tokenEnv: T\n", "forge.repository: required"},
		{"a subgroup on GitHub", httpsRepo, "  type: github\n  repository: a/b/c\n  tokenEnv: T\n", `forge.repository: "a/b/c": want owner/name (only GitLab has subgroups)`},
		{"a repository that climbs", httpsRepo, "  type: gitlab\n  repository: a/../b\n  tokenEnv: T\n", `forge.repository: "a/../b": want owner/name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("sluice.yaml", []byte(withForge(tt.repoURL, tt.forge)))
			if err == nil {
				t.Fatalf("parsed, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "secret") {
				t.Errorf("error shows a credential: %v", err)
			}
		})
	}
}

func TestForgeToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("s3cr3t-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "empty"), []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLUICE_TEST_FORGE_TOKEN", "env-s3cr3t")
	tests := []struct {
		name    string
		f       Forge
		want    string
		wantErr string
	}{
		{"from a file, newline dropped", Forge{TokenFile: file}, "s3cr3t-token", ""},
		{"from a variable", Forge{TokenEnv: "SLUICE_TEST_FORGE_TOKEN"}, "env-s3cr3t", ""},
		{"a missing file is named", Forge{TokenFile: filepath.Join(dir, "nope")}, "", "forge.tokenFile: read " + filepath.Join(dir, "nope")},
		{"an empty file is named", Forge{TokenFile: filepath.Join(dir, "empty")}, "", "is empty"},
		{"an unset variable is named", Forge{TokenEnv: "SLUICE_TEST_FORGE_UNSET"}, "", "environment variable SLUICE_TEST_FORGE_UNSET is not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.f.Token()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Token() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
