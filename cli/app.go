package cli

import (
	"context"
	"io"

	"github.com/hashicorp/go-plugin"
	"github.com/urfave/cli/v2"
)

// Version is set at build time with -ldflags "-X rotor.sh/rotor/cli.Version=...".
var Version = "dev"

// Run runs the rotor command line with args (args[0] is the program name).
// It returns errors instead of exiting; cmd/rotor is the one place that exits.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// Plugin processes never outlive this one, whatever path it exits by.
	defer plugin.CleanupClients()
	if err := refuseArgvSecrets(args); err != nil {
		return err
	}
	app := newApp(stdout, stderr)
	if len(args) > 0 {
		app.Metadata = map[string]any{metaInvoked: args[0]}
	}
	return app.RunContext(ctx, interspersed(app, args))
}

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                 "rotor",
		Usage:                "resolve secret references at dispatch time, from an encrypted vault",
		Version:              Version,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		Suggest:              true,
		// Errors are returned to main, which prints one line and exits.
		ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{
			serveCommand(),
			proxyCommand(),
			dispatchCommand(),
			caCommand(),
			migrateCommand(),
			pluginCommand(),
			versionCommand(),
			completionCommand(),
			secretsCommand(),
			queuesCommand(),
			jobsCommand(),
			workflowsCommand(),
			runsCommand(),
			auditCommand(),
			keysCommand(),
			workspacesCommand(),
			callbackCommand(),
			vaultCommand(),
			devCommand(),
			doctorCommand(),
		},
	}
	attachNameCompletion(app)
	oneLineUsageErrors(app)
	return app
}
