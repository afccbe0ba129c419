package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"rotor.sh/rotor/storage/postgres"
)

func migrateCommand() *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "apply the PostgreSQL schema migrations (rotor serve also applies them on start)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: flagPostgresDSN, EnvVars: []string{envName(flagPostgresDSN)}, Usage: "PostgreSQL connection string (ROTOR_POSTGRES_DSN or a config file; refused on the command line)"},
		},
		Action: func(c *cli.Context) error {
			dsn := c.String(flagPostgresDSN)
			if dsn == "" {
				return settingErr(flagPostgresDSN, "required")
			}
			s, err := postgres.Open(c.Context, dsn)
			if err != nil {
				return err
			}
			defer s.Close()
			fmt.Fprintf(c.App.Writer, "schema up to date (%d migrations)\n", postgres.Migrations())
			return nil
		},
	}
}
