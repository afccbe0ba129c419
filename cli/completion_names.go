package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// completionTimeout bounds the API call behind one completion: a slow or
// absent server must not hang the shell.
const completionTimeout = 2 * time.Second

// metaInvoked is the app metadata key of the name rotor was invoked as.
const metaInvoked = "invoked"

// shellWord is what may appear unquoted in the generated scripts.
var shellWord = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// invokedName is the command name completion registers for: how the user
// called rotor (a renamed or symlinked binary too), else "rotor".
func invokedName(c *cli.Context) string {
	if n, ok := c.App.Metadata[metaInvoked].(string); ok {
		if n = filepath.Base(n); shellWord.MatchString(n) {
			return n
		}
	}
	return "rotor"
}

// nameCompleters: which commands complete which names from the API.
var nameCompleters = map[string]string{
	"secrets get": "secrets", "secrets rotate": "secrets", "secrets delete": "secrets",
	"queues get": "queues", "queues update": "queues", "queues delete": "queues",
	"jobs enqueue": "queues", "jobs list": "queues",
	"workflows get": "workflows", "workflows delete": "workflows", "workflows run": "workflows", "workflows apply": "workflows",
}

// attachNameCompletion makes the commands in nameCompleters complete their
// NAME argument with the workspace's secret, queue or workflow names.
func attachNameCompletion(app *cli.App) {
	for _, group := range app.Commands {
		for _, sub := range group.Subcommands {
			kind, ok := nameCompleters[group.Name+" "+sub.Name]
			if !ok {
				continue
			}
			sub.BashComplete = func(c *cli.Context) {
				if c.NArg() > 0 {
					return
				}
				for _, n := range listNames(c, kind) {
					fmt.Fprintln(c.App.Writer, n)
				}
			}
		}
	}
}

// listNames asks the API for the names of kind ("secrets", "queues" or
// "workflows");
// any failure completes nothing.
func listNames(c *cli.Context, kind string) []string {
	key := c.String(flagAPIKey)
	if key == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.Context, completionTimeout)
	defer cancel()
	a := &apiClient{base: strings.TrimRight(c.String(flagAPIURL), "/"), key: key, output: "json",
		out: c.App.Writer, http: &http.Client{Timeout: completionTimeout}}
	var res map[string][]struct {
		Name string `json:"name"`
	}
	if err := a.do(ctx, "GET", "/v1/"+url.PathEscape(kind), nil, &res); err != nil {
		return nil
	}
	var names []string
	for _, it := range res[kind] {
		if shellWord.MatchString(it.Name) {
			names = append(names, it.Name)
		}
	}
	return names
}
