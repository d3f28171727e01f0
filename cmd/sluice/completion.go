package main

import (
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"
)

// shells are the shells `sluice completion` writes a script for.
var shells = []string{"bash", "zsh", "fish"}

func newCompletionCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:                   "completion bash|zsh|fish",
		DisableFlagsInUseLine: true,
		Short:                 "Print a shell completion script",
		Long: `Completion prints a script that completes sluice's commands, flags, their
values and, for --gate, the gates of the configuration --config names.

  bash (needs the bash-completion package):
    source <(sluice completion bash)
    sluice completion bash > /etc/bash_completion.d/sluice

  zsh:
    source <(sluice completion zsh)
    sluice completion zsh > "${fpath[1]}/_sluice"

  fish:
    sluice completion fish | source
    sluice completion fish > ~/.config/fish/completions/sluice.fish`,
		ValidArgs: shells,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 || !slices.Contains(shells, args[0]) {
				return usageError{fmt.Errorf("want one shell: bash, zsh or fish, got %q", args)}
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			root := c.Root()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(stdout, true)
			case "zsh":
				return root.GenZshCompletion(stdout)
			default:
				return root.GenFishCompletion(stdout, true)
			}
		},
	}
}
