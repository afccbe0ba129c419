package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

type callbackSettingsOut struct {
	AllowedHosts      []string   `json:"allowed_hosts"`
	UpdatedAt         time.Time  `json:"updated_at"`
	SigningGraceUntil *time.Time `json:"signing_grace_until"`
}

func (c callbackSettingsOut) rows() [][]string {
	hosts := strings.Join(c.AllowedHosts, ",")
	if hosts == "" {
		hosts = "(any; only admins may choose callback hosts)"
	}
	return [][]string{{hosts, fmtTime(&c.UpdatedAt), fmtTime(c.SigningGraceUntil)}}
}

var callbackHeader = []string{"ALLOWED_HOSTS", "UPDATED", "SIGNING_GRACE_UNTIL"}

// callbackCommand manages the workspace's callback credentials (admin).
func callbackCommand() *cli.Command {
	return &cli.Command{
		Name:  "callback-secret",
		Usage: "manage the workspace's callback secret and webhook signing secret (needs an admin key)",
		Subcommands: []*cli.Command{
			{
				Name:  "show",
				Usage: "show where the callback credentials may be sent (never their values)",
				Flags: clientFlags(),
				Action: func(c *cli.Context) error {
					a, err := newClient(c)
					if err != nil {
						return err
					}
					var res callbackSettingsOut
					if err := a.do(c.Context, "GET", "/v1/workspace/callback-secret", nil, &res); err != nil {
						return err
					}
					return a.print(res, callbackHeader, res.rows())
				},
			},
			{
				Name:      "allow-hosts",
				Usage:     "set the hosts the callback credentials may be sent to (replaces the list; no HOST clears it)",
				ArgsUsage: "[HOST...]",
				Flags:     clientFlags(),
				Action: func(c *cli.Context) error {
					a, err := newClient(c)
					if err != nil {
						return err
					}
					hosts := append([]string{}, c.Args().Slice()...)
					var res callbackSettingsOut
					if err := a.do(c.Context, "PATCH", "/v1/workspace/callback-secret", map[string]any{"allowed_hosts": hosts}, &res); err != nil {
						return err
					}
					return a.print(res, callbackHeader, res.rows())
				},
			},
			{
				Name:  "rotate",
				Usage: "rotate the callback secret and/or the signing secret; the new values are printed once",
				Flags: append(clientFlags(),
					&cli.DurationFlag{Name: "grace", Value: 24 * time.Hour, Usage: "keep signing with the previous signing secret too for this long (0s: cut over at once, e.g. after a leak; at most 168h)"},
					&cli.StringFlag{Name: "only", Usage: "rotate only \"signing\" or only \"callback\" (default both)"},
					&cli.BoolFlag{Name: "yes", Usage: "do not ask (the rotation cuts something over at once)"},
				),
				Action: func(c *cli.Context) error {
					// Asks when handlers on the old value fail at once: the
					// Bearer credential has no grace, nor does --grace 0s.
					if cutover := c.String("only") != "signing" || c.Duration("grace") == 0; cutover && !c.Bool("yes") {
						if err := confirm(c, "Handlers still checking the old callback secret (or, with --grace 0s, the old signing secret) fail at once. Rotate? [y/N] "); err != nil {
							return err
						}
					}
					a, err := newClient(c)
					if err != nil {
						return err
					}
					body := map[string]any{"grace": c.Duration("grace").String()}
					if o := c.String("only"); o != "" {
						body["only"] = o
					}
					var res struct {
						CallbackSecret string `json:"callback_secret,omitempty"`
						SigningSecret  string `json:"signing_secret,omitempty"`
						GraceSeconds   *int64 `json:"signing_grace_seconds,omitempty"`
					}
					if err := a.do(c.Context, "POST", "/v1/workspace/callback-secret", body, &res); err != nil {
						return err
					}
					if a.output == "json" {
						return a.print(res, nil, nil)
					}
					if res.CallbackSecret != "" {
						fmt.Fprintf(a.out, "callback secret (ROTOR_CALLBACK_SECRET of your handlers; in effect now):\n\n  %s\n\n", res.CallbackSecret)
					}
					if res.SigningSecret != "" {
						fmt.Fprintf(a.out, "signing secret (Standard Webhooks):\n\n  %s\n\n", res.SigningSecret)
						if res.GraceSeconds != nil && *res.GraceSeconds > 0 {
							fmt.Fprintf(a.out, "For %s, deliveries are signed under the new and the previous signing secret.\n", time.Duration(*res.GraceSeconds)*time.Second)
						}
					}
					fmt.Fprintln(a.out, "They are shown only now.")
					return nil
				},
			},
		},
	}
}
