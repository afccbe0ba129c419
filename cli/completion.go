package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// bashCompletion asks rotor itself for completions (urfave/cli's
// --generate-bash-completion), so it follows every command and flag.
const bashCompletion = `_rotor_complete() {
  local cur words
  cur="${COMP_WORDS[COMP_CWORD]}"
  words=("${COMP_WORDS[@]:0:COMP_CWORD}")
  COMPREPLY=( $(compgen -W "$("${words[@]}" --generate-bash-completion 2>/dev/null)" -- "$cur") )
}
complete -o bashdefault -o default -F _rotor_complete %[1]s
`

const zshCompletion = `#compdef rotor
_rotor() {
  local -a opts
  opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  _describe 'values' opts
}
compdef _rotor %[1]s
`

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: source <(rotor completion bash); completes commands, flags, secret and queue names",
		ArgsUsage: "bash|zsh|fish",
		Action: func(c *cli.Context) error {
			switch c.Args().First() {
			case "bash":
				fmt.Fprintf(c.App.Writer, bashCompletion, invokedName(c))
			case "zsh":
				fmt.Fprintf(c.App.Writer, zshCompletion, invokedName(c))
			case "fish":
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return err
				}
				fmt.Fprint(c.App.Writer, s)
			default:
				return fmt.Errorf("usage: rotor completion bash|zsh|fish")
			}
			return nil
		},
	}
}
