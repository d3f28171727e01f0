package main

import (
	"io"
	"path/filepath"
	"strings"
	"testing"
)

// TestFlagsKeepTheirNamesAndDefaults: every flag sluice had before it moved
// to cobra is still there, under the same name, with the same default.
func TestFlagsKeepTheirNamesAndDefaults(t *testing.T) {
	tests := []struct {
		command, flag, def string
	}{
		{"run", "config", "sluice.yaml"},
		{"run", "once", "false"},
		{"run", "kubeconfig", ""},
		{"run", "progress", "auto"},
		{"run", "log-level", "info"},
		{"run", "log-format", "text"},
		{"run", "kube-api-qps", "50"},
		{"run", "kube-api-burst", "300"},
		{"run", "listen", ""},
		{"run", "public-url", ""},
		{"status", "config", "sluice.yaml"},
		{"status", "output", "text"},
		{"status", "color", "auto"},
		{"status", "kubeconfig", ""},
		{"render", "config", "sluice.yaml"},
		{"render", "gate", ""},
		{"render", "commit", ""},
		{"render", "dir", ""},
	}
	root := newRootCommand(io.Discard, io.Discard)
	for _, tt := range tests {
		t.Run(tt.command+" --"+tt.flag, func(t *testing.T) {
			c, _, err := root.Find([]string{tt.command})
			if err != nil || c.Name() != tt.command {
				t.Fatalf("no command %s: %v", tt.command, err)
			}
			f := c.Flags().Lookup(tt.flag)
			if f == nil {
				t.Fatalf("sluice %s has no --%s", tt.command, tt.flag)
			}
			if f.DefValue != tt.def {
				t.Errorf("sluice %s --%s defaults to %q, want %q", tt.command, tt.flag, f.DefValue, tt.def)
			}
		})
	}
}

// TestHelpPerCommand: --help (and -h) on each command prints that command's
// usage and flags on stdout and exits 0.
func TestHelpPerCommand(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"sluice [command]", "run ", "status ", "render ", "version ", "completion "}},
		{[]string{"-h"}, []string{"sluice [command]", "render "}},
		{[]string{"help"}, []string{"sluice [command]", "render "}},
		{[]string{"run", "--help"}, []string{"sluice run --config FILE [--once]", "--config file", "--once", "--kubeconfig file", "--progress", "--log-level", "--log-format", "--kube-api-qps", "--kube-api-burst", "--listen address", "Exit codes"}},
		{[]string{"status", "-h"}, []string{"sluice status --config FILE", "--config file", "--output", "--color", "--kubeconfig file", "Exit codes"}},
		{[]string{"render", "--help"}, []string{"sluice render --config FILE --gate GATE [--commit SHA | --dir PATH]", "--gate name", "--commit commit", "--dir path", "Exit codes"}},
		{[]string{"version", "--help"}, []string{"sluice version"}},
		{[]string{"completion", "--help"}, []string{"bash", "zsh", "fish"}},
		{[]string{"help", "render"}, []string{"sluice render --config FILE", "--gate name"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := sluice(t, tt.args...)
			if code != 0 || stderr != "" {
				t.Fatalf("exit %d, stderr %q; want 0 and nothing on stderr", code, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("help lacks %q:\n%s", w, stdout)
				}
			}
		})
	}
}

// TestUsageErrorsExitTwo: a command called wrongly exits 2 and says why,
// naming the command, on stderr; nothing is run.
func TestUsageErrorsExitTwo(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "sluice: no command given"},
		{"an unknown command", []string{"stauts"}, `unknown command "stauts"; did you mean status?`},
		{"an unknown flag of run", []string{"run", "--bogus"}, "sluice run: unknown flag: --bogus"},
		{"an unknown flag of status", []string{"status", "--once"}, "sluice status: unknown flag: --once"},
		{"an unknown shorthand", []string{"render", "-x"}, "sluice render: unknown shorthand flag: 'x' in -x"},
		{"a flag without its value", []string{"run", "--config"}, "flag needs an argument: --config"},
		{"a value that is not a number", []string{"run", "--kube-api-burst", "many"}, `invalid argument "many" for "--kube-api-burst"`},
		{"a bad log level", []string{"run", "--log-level", "loud", "--config", "/nonexistent/sluice.yaml"}, `--log-level "loud": want debug, info, warn or error`},
		{"a bad output", []string{"status", "--output", "yaml", "--config", "/nonexistent/sluice.yaml"}, `--output "yaml": want text or json`},
		{"an argument to version", []string{"version", "now"}, `sluice version: unexpected argument "now"`},
		{"an argument to run", []string{"run", "sluice.yaml"}, `sluice run: unexpected argument "sluice.yaml"`},
		{"render without a gate", []string{"render", "--config", "/nonexistent/sluice.yaml"}, "sluice render: --gate is required"},
		{"render of a commit and a directory", []string{"render", "--gate", "staging", "--commit", "abcd", "--dir", "."}, "--commit and --dir: give one or neither"},
		{"render of a commit that is not a hash", []string{"render", "--gate", "staging", "--commit", "main~1"}, `--commit "main~1": want a commit hash`},
		{"completion for an unknown shell", []string{"completion", "tcsh"}, "tcsh"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := sluice(t, tt.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q does not say %q", stderr, tt.want)
			}
			if tt.args != nil && stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
		})
	}
}

// TestFailuresExitOne: a command that ran and failed exits 1, not 2.
func TestFailuresExitOne(t *testing.T) {
	for _, args := range [][]string{
		{"run", "--once", "--config", "/nonexistent/sluice.yaml"},
		{"status", "--config", "/nonexistent/sluice.yaml"},
		{"render", "--gate", "staging", "--config", "/nonexistent/sluice.yaml"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, _, stderr := sluice(t, args...)
			if code != 1 || !strings.Contains(stderr, "sluice "+args[0]+": ") || !strings.Contains(stderr, "/nonexistent/sluice.yaml") {
				t.Errorf("exit %d, stderr %q; want 1 naming the config file", code, stderr)
			}
		})
	}
}

// TestSingleDashLongFlagsStillWork: the standard flag package accepted
// -config and -once; scripts that use them keep working.
func TestSingleDashLongFlagsStillWork(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"run", "-kube-api-qps", "0", "-config", "/nonexistent/sluice.yaml"}, "--kube-api-qps and --kube-api-burst must be greater than zero"},
		{[]string{"run", "-once", "-kube-api-burst=0"}, "--kube-api-qps and --kube-api-burst must be greater than zero"},
		{[]string{"status", "-output", "yaml"}, `--output "yaml": want text or json`},
		// The value of a flag is never taken for a flag.
		{[]string{"run", "--log-level", "-once", "--config", "/nonexistent/sluice.yaml"}, `--log-level "-once"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, _, stderr := sluice(t, tt.args...)
			if code != 2 || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want 2 saying %q", code, stderr, tt.want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, stdout, _ := sluice(t, args...)
		if code != 0 || stdout != "sluice dev\n" {
			t.Errorf("sluice %s: exit %d, %q; want 0 and %q", args[0], code, stdout, "sluice dev\n")
		}
	}
}

// TestCompletion: `sluice completion SHELL` prints a script for that shell,
// and the completions it asks sluice for know each command's flags and
// values, and the gates of the configuration.
func TestCompletion(t *testing.T) {
	cfg := writeConfig(t, "repository:\n  url: https://git.example.com/desired.git\ngates:\n  - name: staging\n    path: environments/staging\n    targetBranch: staging\n  - name: shared-dev\n    path: environments/shared-dev\n    targetBranch: shared-dev\n")
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"completion", "bash"}, []string{"# bash completion V2 for sluice", "__start_sluice", "complete -o default -F __start_sluice sluice"}},
		{[]string{"completion", "zsh"}, []string{"#compdef sluice", "compdef _sluice sluice"}},
		{[]string{"completion", "fish"}, []string{"# fish completion for sluice", "complete -c sluice"}},
		// What the scripts run on <TAB>:
		{[]string{"__complete", ""}, []string{"run\t", "status\t", "render\t", "version\t", "completion\t"}},
		{[]string{"__complete", "run", "--"}, []string{"--config\t", "--once\t", "--kubeconfig\t", "--listen\t", "--kube-api-qps\t"}},
		{[]string{"__complete", "run", "--progress", ""}, []string{"auto\n", "always\n", "never\n"}},
		{[]string{"__complete", "status", "--output", ""}, []string{"text\n", "json\n"}},
		{[]string{"__complete", "render", "--config", cfg, "--gate", ""}, []string{"staging\n", "shared-dev\n"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, _ := sluice(t, tt.args...)
			if code != 0 {
				t.Fatalf("exit %d", code)
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("output lacks %q:\n%s", w, stdout)
				}
			}
		})
	}
}

// writeConfig writes a configuration file and returns its path.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sluice.yaml")
	writeFile(t, p, content)
	return p
}
