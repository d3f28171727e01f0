package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/manifests"
)

const good = `repository:
  url: https://git.example.com/platform/desired-state.git
  credentials:
    username: sluice
    passwordEnv: SLUICE_GIT_TOKEN
gates:
  - name: staging
    path: environments/staging
    targetBranch: staging
    timeouts:
      health: 90s
    tests:
      commands:
        - command: [./smoke.sh]
`

func TestParseAppliesDefaults(t *testing.T) {
	c, err := Parse("sluice.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	g := c.Gates[0]
	got := map[string]any{
		"source":   c.Repository.SourceBranch,
		"poll":     c.PollInterval.Duration,
		"health":   g.Timeouts.Health.Duration,
		"apply":    g.Timeouts.Apply.Duration,
		"tests":    g.Timeouts.Tests.Duration,
		"keep":     g.OnFailure.KeepNamespace.Duration,
		"revert":   g.RevertOnFailure(),
		"scoped":   string(g.ClusterScoped),
		"cmdName":  g.Tests.Commands[0].Name,
		"cmdLimit": g.Tests.Commands[0].Timeout.Duration,
		"attempts": g.Retry.OnceAttempts,
		"author":   c.Repository.Author.Name,
		"userEnv":  c.Repository.Credentials.PasswordEnv,
		"gateLine": g.Line(),
		"applyAt":  g.ApplyConcurrency,
		"keyNs":    c.Repository.VerdictKeyNamespace,
		"strategy": g.Strategy,
		"parMin":   g.Parallelism.Min,
		"parMax":   g.Parallelism.Max,
		"reuse":    g.ReuseEnvironment,
	}
	want := map[string]any{
		"source":   "main",
		"poll":     30 * time.Second,
		"health":   90 * time.Second,
		"apply":    2 * time.Minute,
		"tests":    10 * time.Minute,
		"keep":     30 * time.Minute,
		"revert":   true,
		"scoped":   "dry-run",
		"cmdName":  "./smoke.sh",
		"cmdLimit": 10 * time.Minute,
		"attempts": 5,
		"author":   "Sluice",
		"userEnv":  "SLUICE_GIT_TOKEN",
		"gateLine": 7,
		"applyAt":  10,
		"keyNs":    "sluice-system",
		"strategy": "serial",
		"parMin":   1,
		"parMax":   4,
		"reuse":    false,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

func TestParseRejectsBadInput(t *testing.T) {
	tests := []struct {
		name string
		edit func(string) string
		want string
	}{
		{
			name: "an unknown field in a gate names its path and line",
			edit: func(s string) string { return strings.Replace(s, "      health: 90s", "      helth: 90s", 1) },
			want: "sluice.yaml:11: gates[0].timeouts.helth: unknown field",
		},
		{
			name: "an unknown top-level field is rejected",
			edit: func(s string) string { return s + "pollIntervall: 5s\n" },
			want: "sluice.yaml:15: pollIntervall: unknown field",
		},
		{
			name: "a bad duration names the value and line",
			edit: func(s string) string { return strings.Replace(s, "90s", "ninety", 1) },
			want: `sluice.yaml:11: bad duration "ninety"`,
		},
		{
			name: "a negative duration is rejected",
			edit: func(s string) string { return strings.Replace(s, "90s", "-5s", 1) },
			want: `sluice.yaml:11: bad duration "-5s": must not be negative`,
		},
		{
			name: "a missing gate path names the gate",
			edit: func(s string) string { return strings.Replace(s, "    path: environments/staging\n", "", 1) },
			want: "sluice.yaml:7: gates[0].path: required",
		},
		{
			name: "a path that climbs out of the repository is rejected",
			edit: func(s string) string { return strings.Replace(s, "environments/staging", "../staging", 1) },
			want: "gates[0].path: \"../staging\" must be relative",
		},
		{
			name: "a missing url is rejected",
			edit: func(s string) string {
				return strings.Replace(s, "  url: https://git.example.com/platform/desired-state.git\n", "", 1)
			},
			want: "sluice.yaml:1: repository.url: required",
		},
		{
			name: "a verdict key named twice is rejected",
			edit: func(s string) string {
				return strings.Replace(s, "  url: ", "  verdictKeyFile: /etc/sluice/key\n  verdictKeyEnv: SLUICE_KEY\n  url: ", 1)
			},
			want: "sluice.yaml:1: repository.verdictKeyEnv: verdictKeyFile and verdictKeyEnv are both set",
		},
		{
			name: "a namespace for a key that is not generated is rejected",
			edit: func(s string) string {
				return strings.Replace(s, "  url: ", "  verdictKeyEnv: SLUICE_KEY\n  verdictKeyNamespace: sluice\n  url: ", 1)
			},
			want: "repository.verdictKeyNamespace: only used for a generated key",
		},
		{
			name: "a bad namespace for the key is rejected",
			edit: func(s string) string {
				return strings.Replace(s, "  url: ", "  verdictKeyNamespace: Sluice_System\n  url: ", 1)
			},
			want: `repository.verdictKeyNamespace: "Sluice_System" is not a valid namespace name`,
		},
		{
			name: "the target cannot be the source branch",
			edit: func(s string) string { return strings.Replace(s, "targetBranch: staging", "targetBranch: main", 1) },
			want: "gates[0].targetBranch: must differ from the source branch",
		},
		{
			name: "a bad cluster-scoped policy lists the choices",
			edit: func(s string) string {
				return strings.Replace(s, "    timeouts:", "    clusterScoped: apply\n    timeouts:", 1)
			},
			want: `gates[0].clusterScoped: "apply": want "dry-run" or "ignore"`,
		},
		{
			name: "a command given as a string instead of a list is rejected",
			edit: func(s string) string { return strings.Replace(s, "[./smoke.sh]", "./smoke.sh", 1) },
			want: "sluice.yaml:14: gates[0].tests.commands[0].command: want a list",
		},
		{
			name: "a duplicate key is rejected",
			edit: func(s string) string {
				return strings.Replace(s, "    targetBranch: staging\n", "    targetBranch: staging\n    targetBranch: prod\n", 1)
			},
			want: "gates[0].targetBranch: field given twice",
		},
		{
			name: "two gates with one name are rejected",
			edit: func(s string) string {
				return s + "  - name: staging\n    path: environments/other\n    targetBranch: other\n"
			},
			want: `gates[1].name: gate "staging" is defined twice`,
		},
		{
			name: "an apply concurrency out of range is rejected",
			edit: func(s string) string { return s + "    applyConcurrency: 1000\n" },
			want: "sluice.yaml:7: gates[0].applyConcurrency: 1000: want 1 to 100",
		},
		{
			name: "reuseEnvironment that is not a boolean is rejected",
			edit: func(s string) string { return s + "    reuseEnvironment: sometimes\n" },
			want: `sluice.yaml:15: gates[0].reuseEnvironment: "sometimes": want true/false`,
		},
		{
			name: "an unknown strategy is rejected",
			edit: func(s string) string { return s + "    strategy: zuul\n" },
			want: `sluice.yaml:7: gates[0].strategy: "zuul": want serial, speculative or batch`,
		},
		{
			name: "a parallelism above 32 is rejected",
			edit: func(s string) string { return s + "    parallelism: {max: 33}\n" },
			want: "sluice.yaml:7: gates[0].parallelism.max: 33: want 1 to 32",
		},
		{
			name: "a parallelism floor above its ceiling is rejected",
			edit: func(s string) string { return s + "    strategy: speculative\n    parallelism: {min: 5, max: 3}\n" },
			want: "sluice.yaml:7: gates[0].parallelism.min: 5: want 1 to parallelism.max (3)",
		},
		{
			name: "an unknown parallelism field is rejected",
			edit: func(s string) string { return s + "    parallelism: {maximum: 3}\n" },
			want: "maximum",
		},
		{
			name: "gate names that make the same test namespace are rejected",
			edit: func(s string) string {
				return strings.Replace(s, "- name: staging", "- name: team-a", 1) + "  - name: team--a\n    path: environments/other\n    targetBranch: other\n"
			},
			want: `sluice.yaml:15: gates[1].name: gate "team--a" would share its test namespaces (sluice-team-a-<sha>) with gate "team-a"`,
		},
		{
			name: "a gate name with a dash run beside another is rejected in either order",
			edit: func(s string) string {
				return strings.Replace(s, "- name: staging", "- name: web---1", 1) + "  - name: web-1\n    path: environments/other\n    targetBranch: other\n"
			},
			want: `gates[1].name: gate "web-1" would share its test namespaces (sluice-web-1-<sha>) with gate "web---1"`,
		},
		{
			name: "a gate name that cannot make a namespace is rejected",
			edit: func(s string) string { return strings.Replace(s, "name: staging", "name: Staging_1", 1) },
			want: `gates[0].name: "Staging_1" must be lower-case`,
		},
		{
			name: "no gates is rejected",
			edit: func(s string) string { return s[:strings.Index(s, "gates:")] },
			want: "gates: at least one gate is required",
		},
		{
			name: "invalid YAML names the line",
			edit: func(s string) string { return s + "  - name: [unclosed\n" },
			want: "sluice.yaml:14: did not find expected",
		},
		{
			name: "a render memory limit too small to start in is refused, naming the field",
			edit: func(s string) string { return s + "limits:\n  renderMemoryMiB: 8\n" },
			want: "sluice.yaml:15: limits.renderMemoryMiB: must be at least 64 (MiB)",
		},
		{
			name: "a negative revert limit is refused, naming the field",
			edit: func(s string) string { return s + "limits:\n  revertMaxLines: -1\n" },
			want: "sluice.yaml:15: limits.revertMaxLines: must not be negative",
		},
		{
			name: "an unknown limit is refused",
			edit: func(s string) string { return s + "limits:\n  renderTimout: 5s\n" },
			want: "limits.renderTimout: unknown field",
		},
		{
			name: "an alias is refused",
			edit: func(s string) string {
				return strings.Replace(s, "    timeouts:\n      health: 90s\n", "    timeouts: &t\n      health: 90s\n    retry: *t\n", 1)
			},
			want: "aliases are not allowed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("sluice.yaml", []byte(tt.edit(good)))
			if err == nil {
				t.Fatalf("Parse succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestLimitsReachTheRenderAndTheRevert(t *testing.T) {
	c, err := Parse("sluice.yaml", []byte(good+"limits:\n  renderTimeout: 5s\n  renderMemoryMiB: 256\n  maxFileBytes: 4096\n  maxRenderedObjects: 50\n  revertMaxLines: 500\n  revertMaxFileBytes: 65536\n"))
	if err != nil {
		t.Fatal(err)
	}
	r, v := c.Limits.RenderOptions(), c.Limits.RevertOptions()
	got := []any{r.RenderTimeout, r.MaxRenderMemory, r.MaxFileSize, r.MaxObjects, v.MaxFileLines, v.MaxFileBytes}
	want := []any{5 * time.Second, int64(256 << 20), int64(4096), 50, 500, int64(65536)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	d, err := Parse("sluice.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(manifests.DefaultRenderOptions(), d.Limits.RenderOptions()); diff != "" {
		t.Errorf("without limits, the render's defaults (-want +got)\n%s", diff)
	}
	if diff := cmp.Diff(gitrepo.DefaultRevertOptions(), d.Limits.RevertOptions()); diff != "" {
		t.Errorf("without limits, the revert's defaults (-want +got)\n%s", diff)
	}
}

func TestParseEmptyFile(t *testing.T) {
	for _, in := range []string{"", "# only a comment\n"} {
		if _, err := Parse("sluice.yaml", []byte(in)); err == nil || !strings.Contains(err.Error(), "sluice.yaml: file is empty") {
			t.Errorf("Parse(%q) = %v, want file is empty", in, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(good)
	f.Add("repository: {url: x}\ngates: [{name: a, path: b, targetBranch: c}]\n")
	f.Add("gates:\n  - &a {name: a}\n  - *a\n")
	f.Add("repository:\n  url: 1\n  credentials: []\n")
	f.Add("pollInterval: 1h\n---\nextra: 1\n")
	f.Add(good + "notify:\n  - url: https://hooks.example/x\n    on: [failed]\n    tokenEnv: T\n")
	f.Add(withForge("git@host:owner/name.git", "  type: gitea\n  url: http://x\n  tokenEnv: T\n"))
	f.Fuzz(func(t *testing.T, in string) {
		c, err := Parse("fuzz.yaml", []byte(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if len(c.Gates) == 0 || c.Repository.URL == "" {
			t.Fatalf("accepted a config without gates or url: %q", in)
		}
	})
}
