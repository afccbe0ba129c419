package cli

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// oneLineUsageErrors makes a usage mistake (an unknown flag, a missing
// value) one line naming the help to read, instead of urfave/cli's help
// dump: scripts and people both get a single readable error.
func oneLineUsageErrors(app *cli.App) {
	app.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
		return fmt.Errorf("%v (see: %s --help)", err, app.Name)
	}
	var walk func(path string, cmds []*cli.Command)
	walk = func(path string, cmds []*cli.Command) {
		for _, c := range cmds {
			p := path + " " + c.Name
			c.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
				return fmt.Errorf("%s (see: %s --help)", strings.TrimSpace(err.Error()), p)
			}
			walk(p, c.Subcommands)
		}
	}
	walk(app.Name, app.Commands)
}
