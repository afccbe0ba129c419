package cli

import (
	"fmt"
	"net/url"
	"time"

	"github.com/urfave/cli/v2"
)

type apiKeyOut struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at"`
	Key       string     `json:"key,omitempty"`
}

func keysCommand() *cli.Command {
	return &cli.Command{
		Name:  "keys",
		Usage: "manage the API keys of your workspace (needs an admin key)",
		Subcommands: []*cli.Command{
			{
				Name:  "create",
				Usage: "create an API key; it is printed once",
				Flags: append(clientFlags(),
					&cli.StringFlag{Name: "name", Required: true, Usage: "who or what the key is for (a teammate, a worker)"},
					&cli.StringFlag{Name: "role", Value: "member", Usage: "member (secrets, audit), admin (also keys) or operator"},
				),
				Action: func(c *cli.Context) error {
					a, err := newClient(c)
					if err != nil {
						return err
					}
					var k apiKeyOut
					if err := a.do(c.Context, "POST", "/v1/keys", map[string]string{"name": c.String("name"), "role": c.String("role")}, &k); err != nil {
						return err
					}
					if a.output == "json" {
						return a.print(k, nil, nil)
					}
					fmt.Fprintf(a.out, "created key %s (%s, role %s)\n\n  %s\n\nIt is shown only now; store it where the worker reads ROTOR_API_KEY.\n", k.ID, k.Name, k.Role, k.Key)
					return nil
				},
			},
			{
				Name:  "list",
				Usage: "list API keys",
				Flags: clientFlags(),
				Action: func(c *cli.Context) error {
					a, err := newClient(c)
					if err != nil {
						return err
					}
					var res struct {
						Keys []apiKeyOut `json:"keys"`
					}
					if err := a.do(c.Context, "GET", "/v1/keys", nil, &res); err != nil {
						return err
					}
					rows := make([][]string, 0, len(res.Keys))
					for _, k := range res.Keys {
						rows = append(rows, []string{k.ID, k.Name, k.Role, fmtTime(&k.CreatedAt), fmtTime(k.RevokedAt)})
					}
					return a.print(res, []string{"ID", "NAME", "ROLE", "CREATED", "REVOKED"}, rows)
				},
			},
			{
				Name:      "revoke",
				Usage:     "revoke an API key",
				ArgsUsage: "KEY_ID",
				Flags:     append(clientFlags(), yesFlag()),
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return fmt.Errorf("usage: rotor keys revoke KEY_ID [--yes]")
					}
					if err := confirmed(c, "Revoke API key %s? Whatever uses it stops working at once.", c.Args().First()); err != nil {
						return err
					}
					a, err := newClient(c)
					if err != nil {
						return err
					}
					if err := a.do(c.Context, "DELETE", "/v1/keys/"+url.PathEscape(c.Args().First()), nil, nil); err != nil {
						return err
					}
					fmt.Fprintf(a.out, "revoked %s\n", c.Args().First())
					return nil
				},
			},
		},
	}
}
