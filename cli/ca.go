package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"rotor.sh/rotor/proxy"
)

func caCommand() *cli.Command {
	return &cli.Command{
		Name:  "ca",
		Usage: "the CA the proxy uses to intercept HTTPS (CONNECT)",
		Subcommands: []*cli.Command{{
			Name:  "init",
			Usage: "write a new CA certificate and key (ca.crt, ca.key) for the proxy",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "dir", EnvVars: []string{envName(flagDataDir)}, Value: DefaultDataDir, Usage: "where to write them (the data dir, where the proxy looks by default)"},
			},
			Action: func(c *cli.Context) error {
				cert, key, err := proxy.InitCA(c.String("dir"))
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "wrote %s and %s (key mode 0600)\n"+
					"Workers must trust %s: e.g. SSL_CERT_FILE, NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE, or the system store.\n"+
					"A running proxy that uses these files starts intercepting CONNECT requests within 2 seconds (at once on SIGHUP).\n", cert, key, cert)
				return nil
			},
		}},
	}
}
