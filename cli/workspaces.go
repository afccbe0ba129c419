package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func workspacesCommand() *cli.Command {
	return &cli.Command{
		Name:  "workspaces",
		Usage: "manage workspaces (needs the operator key)",
		Subcommands: []*cli.Command{{
			Name:      "create",
			Usage:     "create a workspace and its first admin key, printed once",
			ArgsUsage: "NAME",
			Flags:     clientFlags(),
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return fmt.Errorf("usage: rotor workspaces create NAME")
				}
				a, err := newClient(c)
				if err != nil {
					return err
				}
				var res struct {
					Workspace struct {
						ID   string `json:"id"`
						Name string `json:"name"`
					} `json:"workspace"`
					AdminKey apiKeyOut `json:"admin_key"`
				}
				if err := a.do(c.Context, "POST", "/v1/workspaces", map[string]string{"name": c.Args().First()}, &res); err != nil {
					return err
				}
				if a.output == "json" {
					return a.print(res, nil, nil)
				}
				fmt.Fprintf(a.out, "created workspace %s (%s)\nadmin key %s (shown once):\n\n  %s\n", res.Workspace.Name, res.Workspace.ID, res.AdminKey.ID, res.AdminKey.Key)
				return nil
			},
		}},
	}
}
