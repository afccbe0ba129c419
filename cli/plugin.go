package cli

import (
	"github.com/urfave/cli/v2"

	"rotor.sh/rotor/plugins"
)

// pluginCommand is how rotor runs its own storage backends as plugins; it
// is not for people, so it is hidden from help.
func pluginCommand() *cli.Command {
	return &cli.Command{
		Name:   "plugin",
		Hidden: true,
		Subcommands: []*cli.Command{{
			Name:      "storage",
			ArgsUsage: "bbolt|postgres",
			Action: func(c *cli.Context) error {
				// The backend and its settings arrive over the Configure RPC.
				servePluginPprof()
				plugins.Serve(plugins.OpenBackend)
				return nil
			},
		}},
	}
}
