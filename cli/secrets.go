package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"rotor.sh/rotor/vault"
)

type secretOut struct {
	Name         string    `json:"name"`
	ValueHint    string    `json:"value_hint"`
	Version      int64     `json:"version"`
	AllowedHosts []string  `json:"allowed_hosts"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// readValue takes a secret value from --from-env or standard input, never
// from argv, where shell history and ps would see it.
// readValue reads a secret value from --from-env or standard input. Values
// travel as JSON strings, which hold only UTF-8: anything else is refused
// here rather than silently changed (binary values: base64-encode them).
func readValue(c *cli.Context) (string, error) {
	v, err := readRawValue(c)
	if err == nil && !utf8.ValidString(v) {
		err = errors.New("the value is not valid UTF-8 text; base64-encode binary values")
	}
	return v, err
}

func readRawValue(c *cli.Context) (string, error) {
	if v := c.String("from-env"); v != "" {
		val, ok := os.LookupEnv(v)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", v)
		}
		return val, nil
	}
	if isTerminal(os.Stdin) {
		fmt.Fprint(c.App.ErrWriter, "value (end with Ctrl-D): ")
	}
	b, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
	if err != nil {
		return "", err
	}
	v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if v == "" {
		return "", errors.New("no value on standard input (or use --from-env VAR)")
	}
	return v, nil
}

// isTerminal: /dev/null is a character device too, so ask the tty driver.
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

func secretRows(ss ...secretOut) [][]string {
	rows := make([][]string, 0, len(ss))
	for _, s := range ss {
		hosts := strings.Join(s.AllowedHosts, ",")
		if hosts == "" {
			hosts = "-"
		}
		rows = append(rows, []string{s.Name, s.ValueHint, fmt.Sprint(s.Version), hosts, fmtTime(&s.UpdatedAt)})
	}
	return rows
}

var secretHeader = []string{"NAME", "HINT", "VERSION", "ALLOWED HOSTS", "UPDATED"}

func valueFlags() []cli.Flag {
	return append(clientFlags(),
		&cli.StringFlag{Name: "from-env", Usage: "take the value from this environment variable (otherwise standard input)"},
		&cli.StringSliceFlag{Name: "allowed-host", Usage: "restrict the secret to this destination (repeatable): host or *.example.com (default ports only), host:port, https://host[:port]"},
	)
}

// secretBody is the value (and allowed hosts) of a create or rotate.
func secretBody(c *cli.Context) (map[string]any, error) {
	v, err := readValue(c)
	if err != nil {
		return nil, err
	}
	body := map[string]any{"value": v}
	if h := c.StringSlice("allowed-host"); len(h) > 0 {
		body["allowed_hosts"] = h
	}
	return body, nil
}

func secretsCommand() *cli.Command {
	return &cli.Command{
		Name:  "secrets",
		Usage: "manage secrets (values are read from stdin or --from-env, never from arguments)",
		Subcommands: []*cli.Command{
			{
				Name: "create", Usage: "store a new secret", ArgsUsage: "NAME", Flags: valueFlags(),
				Action: func(c *cli.Context) error {
					name, err := oneArg(c, "secrets create NAME")
					if err != nil {
						return err
					}
					body, err := secretBody(c)
					if err != nil {
						return err
					}
					body["name"] = name
					return show(c, "POST", "/v1/secrets", body, secretHeader, func(s secretOut) [][]string { return secretRows(s) })
				},
			},
			{
				Name: "list", Usage: "list secrets (names and hints)", Flags: clientFlags(),
				Action: func(c *cli.Context) error {
					return show(c, "GET", "/v1/secrets", nil, secretHeader, func(r struct {
						Secrets []secretOut `json:"secrets"`
					}) [][]string {
						return secretRows(r.Secrets...)
					})
				},
			},
			{
				Name: "get", Usage: "show a secret's metadata", ArgsUsage: "NAME", Flags: clientFlags(),
				Action: func(c *cli.Context) error {
					name, err := oneArg(c, "secrets get NAME")
					if err != nil {
						return err
					}
					return show(c, "GET", "/v1/secrets/"+url.PathEscape(name), nil, secretHeader, func(s secretOut) [][]string { return secretRows(s) })
				},
			},
			{
				Name: "rotate", Usage: "give a secret a new value (used by the next dispatch)", ArgsUsage: "NAME", Flags: valueFlags(),
				Action: func(c *cli.Context) error {
					name, err := oneArg(c, "secrets rotate NAME")
					if err != nil {
						return err
					}
					body, err := secretBody(c)
					if err != nil {
						return err
					}
					return show(c, "PATCH", "/v1/secrets/"+url.PathEscape(name), body, secretHeader, func(s secretOut) [][]string { return secretRows(s) })
				},
			},
			{
				Name: "delete", Usage: "delete a secret", ArgsUsage: "NAME",
				Flags: append(clientFlags(), &cli.BoolFlag{Name: "yes", Usage: "do not ask"}, &cli.BoolFlag{Name: "force", Usage: "delete even if queues reference it"}),
				Action: func(c *cli.Context) error {
					name, err := oneArg(c, "secrets delete NAME")
					if err != nil {
						return err
					}
					a, err := newClient(c)
					if err != nil {
						return err
					}
					if !c.Bool("yes") {
						if err := confirm(c, fmt.Sprintf("Delete secret %s? Jobs that reference it will fail. [y/N] ", name)); err != nil {
							return err
						}
					}
					path := "/v1/secrets/" + url.PathEscape(name)
					if c.Bool("force") {
						path += "?force=true"
					}
					if err := a.do(c.Context, "DELETE", path, nil, nil); err != nil {
						return err
					}
					fmt.Fprintf(a.out, "deleted %s\n", name)
					return nil
				},
			},
			importCommand(),
		},
	}
}

// confirm asks on the terminal; without one, it refuses (use --yes).
func confirm(c *cli.Context, prompt string) error {
	if !isTerminal(os.Stdin) {
		return errors.New("refusing without confirmation: pass --yes")
	}
	fmt.Fprint(c.App.ErrWriter, prompt)
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
		return errors.New("cancelled")
	}
	return nil
}

// importCommand is the product guide's bulk migration script as one command.
func importCommand() *cli.Command {
	return &cli.Command{
		Name:  "import",
		Usage: "move environment variables into the vault (the guide's bulk migration); prints hints, never values",
		Flags: append(clientFlags(),
			&cli.StringFlag{Name: "env-file", Usage: "read names and values from this .env file (values there win over the environment)"},
			&cli.StringSliceFlag{Name: "only", Usage: "names to import (comma-separated or repeated)"},
			&cli.BoolFlag{Name: "all", Usage: "import every name in --env-file (asks first, listing them)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "say what would happen, change nothing"},
			&cli.BoolFlag{Name: "yes", Usage: "with --all: do not ask"},
		),
		Action: func(c *cli.Context) error {
			var fileVals map[string]string
			var fileOrder []string
			if p := c.String("env-file"); p != "" {
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				fileVals, fileOrder, err = parseDotenv(f)
				f.Close()
				if err != nil {
					return err
				}
			}
			var names []string
			for _, v := range c.StringSlice("only") {
				for _, n := range strings.Split(v, ",") {
					if n = strings.TrimSpace(n); n != "" && !slices.Contains(names, n) {
						names = append(names, n)
					}
				}
			}
			switch {
			case len(names) > 0 && c.Bool("all"):
				return errors.New("give --only or --all, not both")
			case c.Bool("all"):
				if fileVals == nil {
					return errors.New("--all imports the names of --env-file; give --env-file (the whole environment is never imported)")
				}
				names = fileOrder
				if !c.Bool("yes") && !c.Bool("dry-run") {
					fmt.Fprintf(c.App.ErrWriter, "This imports %d names: %s\n", len(names), strings.Join(names, ", "))
					if err := confirm(c, "Continue? [y/N] "); err != nil {
						return err
					}
				}
			case len(names) == 0:
				return errors.New("say which names to import: --only A,B,C (or --all with --env-file)")
			}
			a, err := newClient(c)
			if err != nil {
				return err
			}
			out := a.out
			for i, name := range names {
				prefix := ""
				if len(names) > 10 {
					prefix = fmt.Sprintf("[%d/%d] ", i+1, len(names))
				}
				val, ok := fileVals[name]
				if !ok {
					val, ok = os.LookupEnv(name)
				}
				if !ok || val == "" {
					fmt.Fprintf(out, "%s[skip] %s — not set\n", prefix, name)
					continue
				}
				if c.Bool("dry-run") {
					// What the real run would do, found with read-only calls.
					if err := vault.ValidateName(name); err != nil {
						fmt.Fprintf(out, "%s[dry-run] %s would fail — %s\n", prefix, name, dropKind(err.Error()))
						continue
					}
					err := a.do(c.Context, "GET", "/v1/secrets/"+url.PathEscape(name), nil, nil)
					var ae *apiError
					switch {
					case err == nil:
						fmt.Fprintf(out, "%s[dry-run] %s would be skipped — already exists in vault\n", prefix, name)
					case errors.As(err, &ae) && ae.Status == 404:
						fmt.Fprintf(out, "%s[dry-run] %s would be created\n", prefix, name)
					default:
						return fmt.Errorf("dry run stopped at %s: %w", name, err)
					}
					continue
				}
				var s secretOut
				err := a.do(c.Context, "POST", "/v1/secrets", map[string]string{"name": name, "value": val}, &s)
				var ae *apiError
				switch {
				case err == nil:
					fmt.Fprintf(out, "%s[ok] %s → hint: %s\n", prefix, name, s.ValueHint)
				case errors.As(err, &ae) && ae.Status == 409:
					fmt.Fprintf(out, "%s[skip] %s — already exists in vault\n", prefix, name)
				default:
					fmt.Fprintf(out, "%s[fail] %s — %v\n", prefix, name, err)
					return fmt.Errorf("import stopped at %s: %w", name, err)
				}
			}
			fmt.Fprintln(out, "\nNext step: update your queue callback_url / callback_headers")
			fmt.Fprintln(out, `  PATCH /v1/queues/<queue> {"callback_headers":{"X-Token":"${{ secrets.YOUR_KEY }}"}}`)
			return nil
		},
	}
}
