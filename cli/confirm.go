package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// yesFlag is the one --yes of every destructive command.
func yesFlag() cli.Flag {
	return &cli.BoolFlag{Name: "yes", Usage: "do not ask for confirmation (required when stdin is not a terminal)"}
}

// confirmed returns nil with --yes; otherwise it asks on a terminal and
// refuses with one line without one (scripts must say --yes).
func confirmed(c *cli.Context, format string, args ...any) error {
	if c.Bool("yes") {
		return nil
	}
	return confirm(c, fmt.Sprintf(format, args...)+" [y/N] ")
}
