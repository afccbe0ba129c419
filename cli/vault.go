package cli

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"rotor.sh/rotor/storage/bolt"
)

func vaultCommand() *cli.Command {
	return &cli.Command{
		Name:  "vault",
		Usage: "vault maintenance",
		Subcommands: []*cli.Command{{
			Name:  "compact",
			Usage: "rewrite the bbolt file without free pages, so deleted secrets' bytes leave the file (rotor must be stopped)",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: flagDataDir, EnvVars: []string{envName(flagDataDir)}, Value: DefaultDataDir, Usage: "the data dir"},
			},
			Action: func(c *cli.Context) error {
				before, after, err := bolt.Compact(filepath.Join(c.String(flagDataDir), dbFileName), bolt.Options{})
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "compacted %s: %d -> %d bytes\n", filepath.Join(c.String(flagDataDir), dbFileName), before, after)
				return nil
			},
		}, {
			Name:  "rotate-key",
			Usage: "introduce a new key-encryption key and re-wrap every data key under it, online (operator key)",
			Flags: append(clientFlags(), yesFlag()),
			Action: func(c *cli.Context) error {
				if err := confirmed(c, "Rotate the key-encryption key and re-wrap every data key now?"); err != nil {
					return err
				}
				a, err := newClient(c)
				if err != nil {
					return err
				}
				var res struct {
					NewKeyID  string   `json:"new_key_id"`
					Rewrapped int      `json:"rewrapped"`
					Retired   []string `json:"retired_key_ids"`
					Remaining []string `json:"remaining_key_ids"`
				}
				if err := a.do(c.Context, "POST", "/v1/vault/rotate-key", nil, &res); err != nil {
					return err
				}
				if a.output == "json" {
					return a.print(res, nil, nil)
				}
				fmt.Fprintf(a.out, "new key-encryption key %s; re-wrapped %d data keys; retired %s\n", res.NewKeyID, res.Rewrapped, orNone(res.Retired))
				if len(res.Remaining) > 0 {
					fmt.Fprintf(a.out, "still in use (retried by the next rotation): %s\n", strings.Join(res.Remaining, ", "))
				}
				return nil
			},
		}},
	}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
