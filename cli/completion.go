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
complete -o bashdefault -o default -F _rotor_complete rotor
`

const zshCompletion = `#compdef rotor
_rotor() {
  local -a opts
  opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  _describe 'values' opts
}
compdef _rotor rotor
`

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: source <(rotor completion bash)",
		ArgsUsage: "bash|zsh|fish",
		Action: func(c *cli.Context) error {
			switch c.Args().First() {
			case "bash":
				fmt.Fprint(c.App.Writer, bashCompletion)
			case "zsh":
				fmt.Fprint(c.App.Writer, zshCompletion)
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
