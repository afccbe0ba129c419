package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
)

// clientTimeout bounds one API call from the CLI.
const clientTimeout = 60 * time.Second

func clientFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagAPIURL, EnvVars: []string{envName(flagAPIURL)}, Value: DefaultAPIURL, Usage: "Rotor API address"},
		&cli.StringFlag{Name: flagAPIKey, EnvVars: []string{envName(flagAPIKey)}, Usage: "API key (prefer the environment variable: argv is visible to other users)"},
		&cli.StringFlag{Name: flagOutput, Aliases: []string{"o"}, Value: "table", Usage: "table or json"},
	}
}

// apiClient is the CLI's client of the control API.
type apiClient struct {
	base   string
	key    string
	output string
	out    io.Writer
	http   *http.Client
	// raw is the last successful answer as sent: -o json prints it whole,
	// not the fields the table uses.
	raw []byte
}

func newClient(c *cli.Context) (*apiClient, error) {
	key := c.String(flagAPIKey)
	if key == "" {
		return nil, fmt.Errorf("no API key: set ROTOR_API_KEY (or --api-key)")
	}
	out := c.String(flagOutput)
	if out != "table" && out != "json" {
		return nil, fmt.Errorf("--output must be table or json, not %q", out)
	}
	return &apiClient{
		base: strings.TrimRight(c.String(flagAPIURL), "/"), key: key, output: out,
		out: c.App.Writer, http: &http.Client{Timeout: clientTimeout},
	}, nil
}

// apiError is an error answer of the API; its Error is one readable line.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s: %s (HTTP %d)", e.Code, dropKind(e.Message), e.Status)
}

// dropKind removes the leading "kind: " of an API message (a sentinel's
// text, such as "unauthenticated: " or "already exists: "), which the code
// in front of it already says.
func dropKind(msg string) string {
	kind, rest, ok := strings.Cut(msg, ": ")
	if !ok || rest == "" || len(kind) > 40 {
		return msg
	}
	for _, r := range kind {
		if (r < 'a' || r > 'z') && r != ' ' {
			return msg
		}
	}
	return rest
}

// do calls the API; out (if not nil) receives the decoded JSON answer.
func (a *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return fmt.Errorf("bad API URL %q: %w", a.base, err)
	}
	req.Header.Set("Authorization", "Bearer "+a.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the Rotor API at %s: %w", a.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("reading API answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		var eb struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			return &apiError{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
		}
		return &apiError{Status: resp.StatusCode, Code: "http_error", Message: strings.TrimSpace(string(truncateBytes(data, 200)))}
	}
	a.raw = nil
	if json.Valid(data) {
		a.raw = data
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("unexpected API answer: %w", err)
		}
	}
	return nil
}

func truncateBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// print writes v as indented JSON (--output json) or as a table.
func (a *apiClient) print(v any, header []string, rows [][]string) error {
	if a.output == "json" && a.raw != nil {
		var b bytes.Buffer
		if err := json.Indent(&b, a.raw, "", "  "); err == nil {
			b.WriteByte('\n')
			_, err = a.out.Write(b.Bytes())
			return err
		}
	}
	if a.output == "json" {
		enc := json.NewEncoder(a.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func fmtTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// show calls the API and prints its answer as a table (or JSON with -o json).
func show[T any](c *cli.Context, method, path string, body any, header []string, rows func(T) [][]string) error {
	a, err := newClient(c)
	if err != nil {
		return err
	}
	var v T
	if err := a.do(c.Context, method, path, body, &v); err != nil {
		return err
	}
	return a.print(v, header, rows(v))
}

// oneArg returns the command's single argument, or a usage error.
func oneArg(c *cli.Context, usage string) (string, error) {
	if c.NArg() != 1 {
		return "", fmt.Errorf("usage: rotor %s", usage)
	}
	return c.Args().First(), nil
}
