package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"
)

type workflowOut struct {
	Name       string          `json:"name"`
	Version    int64           `json:"version"`
	Definition json.RawMessage `json:"definition"`
	UpdatedAt  time.Time       `json:"updated_at"`
}

func workflowRows(ws ...workflowOut) [][]string {
	var rows [][]string
	for _, w := range ws {
		var d struct {
			Steps []struct {
				ID string `json:"id"`
			} `json:"steps"`
		}
		json.Unmarshal(w.Definition, &d)
		var ids []string
		for _, s := range d.Steps {
			ids = append(ids, s.ID)
		}
		rows = append(rows, []string{w.Name, fmt.Sprint(w.Version), strings.Join(ids, " > "), fmtTime(&w.UpdatedAt)})
	}
	return rows
}

var workflowHeader = []string{"NAME", "VERSION", "STEPS", "UPDATED"}

type runStepOut struct {
	ID       string          `json:"id"`
	Status   string          `json:"status"`
	Attempts []attemptOut    `json:"attempts"`
	Output   json.RawMessage `json:"output"`
	Error    string          `json:"error_code"`
}

type runOut struct {
	ID          string       `json:"id"`
	Workflow    string       `json:"workflow"`
	Version     int64        `json:"version"`
	Status      string       `json:"status"`
	CurrentStep *string      `json:"current_step"`
	ErrorCode   string       `json:"error_code"`
	Steps       []runStepOut `json:"steps"`
	CreatedAt   time.Time    `json:"created_at"`
}

func runRows(rs ...runOut) [][]string {
	var rows [][]string
	for _, r := range rs {
		cur := "-"
		if r.CurrentStep != nil {
			cur = *r.CurrentStep
		}
		rows = append(rows, []string{r.ID, r.Workflow, fmt.Sprint(r.Version), r.Status, cur, fmtTime(&r.CreatedAt)})
	}
	return rows
}

var runHeader = []string{"ID", "WORKFLOW", "VERSION", "STATUS", "STEP", "CREATED"}

// runStepRows is one run's step timeline.
func runStepRows(r runOut) [][]string {
	var rows [][]string
	for _, s := range r.Steps {
		last := "-"
		if n := len(s.Attempts); n > 0 {
			a := s.Attempts[n-1]
			last = fmt.Sprintf("#%d %d %s %.1fms", a.N, a.StatusCode, a.ErrorCode, a.DurationMS)
		}
		out := string(s.Output)
		if len(out) > 60 {
			out = out[:57] + "..."
		}
		if out == "" {
			out = "-"
		}
		rows = append(rows, []string{r.ID, s.ID, s.Status, fmt.Sprint(len(s.Attempts)), last, out})
	}
	return rows
}

var runStepHeader = []string{"RUN", "STEP", "STATUS", "ATTEMPTS", "LAST ATTEMPT", "OUTPUT"}

// readDefinition reads a workflow file (YAML or JSON, the API's schema,
// with an optional top-level name) as the JSON the API takes.
func readDefinition(path string) (name string, def json.RawMessage, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", nil, err
	}
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", nil, fmt.Errorf("%s: %v", path, oneLine(err))
	}
	m, ok := doc.(map[string]any)
	if !ok {
		return "", nil, fmt.Errorf("%s: want a mapping with steps", path)
	}
	if n, ok := m["name"]; ok {
		s, ok := n.(string)
		if !ok {
			return "", nil, fmt.Errorf("%s: name must be a string", path)
		}
		name = s
		delete(m, "name")
	}
	def, err = json.Marshal(m)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %v", path, err)
	}
	return name, def, nil
}

func workflowsCommand() *cli.Command {
	return &cli.Command{
		Name:  "workflows",
		Usage: "manage durable multi-step workflows (docs/workflows.md)",
		Subcommands: []*cli.Command{
			{
				Name: "apply", ArgsUsage: "[NAME]", Usage: "create or replace a workflow from a YAML or JSON file",
				Flags: append(clientFlags(), &cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "workflow file (YAML or JSON); its name: NAME, the file's name field, or the file name"}),
				Action: func(c *cli.Context) error {
					if c.String("file") == "" || c.NArg() > 1 {
						return errors.New("usage: rotor workflows apply -f FILE [NAME]")
					}
					name, def, err := readDefinition(c.String("file"))
					if err != nil {
						return err
					}
					if c.NArg() == 1 {
						name = c.Args().First()
					}
					if name == "" {
						base := filepath.Base(c.String("file"))
						name = strings.TrimSuffix(base, filepath.Ext(base))
					}
					return show(c, "PUT", "/v1/workflows/"+url.PathEscape(name), def, workflowHeader, func(w workflowOut) [][]string { return workflowRows(w) })
				},
			},
			{Name: "list", Usage: "list the workspace's workflows", Flags: clientFlags(), Action: func(c *cli.Context) error {
				return show(c, "GET", "/v1/workflows", nil, workflowHeader, func(r struct {
					Workflows []workflowOut `json:"workflows"`
				}) [][]string {
					return workflowRows(r.Workflows...)
				})
			}},
			{Name: "get", ArgsUsage: "NAME", Usage: "show a workflow (-o json for its definition)", Flags: clientFlags(), Action: func(c *cli.Context) error {
				name, err := oneArg(c, "workflows get NAME")
				if err != nil {
					return err
				}
				return show(c, "GET", "/v1/workflows/"+url.PathEscape(name), nil, workflowHeader, func(w workflowOut) [][]string { return workflowRows(w) })
			}},
			{Name: "delete", ArgsUsage: "NAME", Usage: "delete a workflow and cancel its open runs", Flags: append(clientFlags(), yesFlag()), Action: func(c *cli.Context) error {
				name, err := oneArg(c, "workflows delete NAME")
				if err != nil {
					return err
				}
				a, err := newClient(c)
				if err != nil {
					return err
				}
				if err := confirmed(c, "Delete workflow %s and cancel its open runs?", name); err != nil {
					return err
				}
				if err := a.do(c.Context, "DELETE", "/v1/workflows/"+url.PathEscape(name), nil, nil); err != nil {
					return err
				}
				fmt.Fprintf(a.out, "deleted %s\n", name)
				return nil
			}},
			{
				Name: "run", ArgsUsage: "NAME", Usage: "start a run; --wait waits for it to finish and prints its steps",
				Flags: append(clientFlags(),
					&cli.StringFlag{Name: "input", Value: "{}", Usage: "the run's input, a JSON object (${{ input.PATH }} in steps)"},
					&cli.StringFlag{Name: "idempotency-key", Usage: "a run with the same key in the last 24 h is not started again (that run is returned)"},
					&cli.BoolFlag{Name: "wait", Usage: "wait until the run completes, fails or is canceled"},
					&cli.DurationFlag{Name: "wait-timeout", Value: 5 * time.Minute, Usage: "with --wait: give up after this long"},
				),
				Action: func(c *cli.Context) error {
					name, err := oneArg(c, "workflows run NAME [--input JSON] [--wait]")
					if err != nil {
						return err
					}
					a, err := newClient(c)
					if err != nil {
						return err
					}
					input := json.RawMessage(c.String("input"))
					if !json.Valid(input) {
						return errors.New("--input is not valid JSON")
					}
					body := map[string]any{"input": input}
					if k := c.String("idempotency-key"); k != "" {
						body["idempotency_key"] = k
					}
					var r runOut
					if err := a.do(c.Context, "POST", "/v1/workflows/"+url.PathEscape(name)+"/runs", body, &r); err != nil {
						return err
					}
					if !c.Bool("wait") {
						return a.print(r, runHeader, runRows(r))
					}
					deadline := time.Now().Add(c.Duration("wait-timeout"))
					for r.Status == "running" || r.Status == "waiting" {
						if time.Now().After(deadline) {
							return fmt.Errorf("run %s is still %s after %v", r.ID, r.Status, c.Duration("wait-timeout"))
						}
						select {
						case <-c.Context.Done():
							return c.Context.Err()
						case <-time.After(200 * time.Millisecond):
						}
						if err := a.do(c.Context, "GET", "/v1/workflow-runs/"+url.PathEscape(r.ID), nil, &r); err != nil {
							return err
						}
					}
					if err := a.print(r, runStepHeader, runStepRows(r)); err != nil {
						return err
					}
					if r.Status != "completed" {
						return runFailure(r)
					}
					return nil
				},
			},
		},
	}
}

// runFailure is the one-line error of a run that did not complete.
func runFailure(r runOut) error {
	at := ""
	if r.CurrentStep != nil {
		at = " at step " + *r.CurrentStep
	}
	if r.ErrorCode != "" {
		return fmt.Errorf("run %s %s%s: %s", r.ID, r.Status, at, r.ErrorCode)
	}
	return fmt.Errorf("run %s %s%s", r.ID, r.Status, at)
}

func runsCommand() *cli.Command {
	runAction := func(method, suffix, usage string, body func(c *cli.Context) (any, error)) cli.ActionFunc {
		return func(c *cli.Context) error {
			if c.NArg() < 1 {
				return fmt.Errorf("usage: rotor runs %s", usage)
			}
			var b any
			if body != nil {
				var err error
				if b, err = body(c); err != nil {
					return err
				}
			}
			s := suffix
			if strings.Contains(s, "%s") {
				if c.NArg() != 2 {
					return fmt.Errorf("usage: rotor runs %s", usage)
				}
				s = fmt.Sprintf(s, url.PathEscape(c.Args().Get(1)))
			} else if c.NArg() != 1 {
				return fmt.Errorf("usage: rotor runs %s", usage)
			}
			if method == "GET" {
				return show(c, method, "/v1/workflow-runs/"+url.PathEscape(c.Args().First())+s, b, runStepHeader, runStepRows)
			}
			return show(c, method, "/v1/workflow-runs/"+url.PathEscape(c.Args().First())+s, b, runHeader, func(r runOut) [][]string { return runRows(r) })
		}
	}
	return &cli.Command{
		Name:  "runs",
		Usage: "inspect and steer workflow runs",
		Subcommands: []*cli.Command{
			{Name: "get", ArgsUsage: "ID", Usage: "show a run's steps (status, attempts, outputs)", Flags: clientFlags(), Action: runAction("GET", "", "get ID", nil)},
			{
				Name: "list", Usage: "list runs, newest first",
				Flags: append(clientFlags(),
					&cli.StringFlag{Name: "workflow", Usage: "only this workflow's runs"},
					&cli.StringFlag{Name: "status", Usage: "running, waiting, completed, failed or canceled"},
					&cli.IntFlag{Name: "limit", Value: 100, Usage: "at most this many (1-1000)"},
				),
				Action: func(c *cli.Context) error {
					q := url.Values{}
					for _, f := range []string{"workflow", "status"} {
						if v := c.String(f); v != "" {
							q.Set(f, v)
						}
					}
					q.Set("limit", fmt.Sprint(c.Int("limit")))
					return show(c, "GET", "/v1/workflow-runs?"+q.Encode(), nil, runHeader, func(r struct {
						Runs []runOut `json:"runs"`
					}) [][]string {
						return runRows(r.Runs...)
					})
				},
			},
			{
				Name: "signal", ArgsUsage: "ID NAME", Usage: "send a signal to a run (kept until the run waits for it)",
				Flags: append(clientFlags(), &cli.StringFlag{Name: "data", Value: "null", Usage: "the signal's data, JSON (${{ signals.NAME.data.PATH }} in steps)"}),
				Action: runAction("POST", "/signals/%s", "signal ID NAME [--data JSON]", func(c *cli.Context) (any, error) {
					d := json.RawMessage(c.String("data"))
					if !json.Valid(d) {
						return nil, errors.New("--data is not valid JSON")
					}
					return map[string]any{"data": d}, nil
				}),
			},
			{Name: "cancel", ArgsUsage: "ID", Usage: "cancel a running or waiting run", Flags: append(clientFlags(), yesFlag()),
				Action: func(c *cli.Context) error {
					if c.NArg() == 1 {
						if err := confirmed(c, "Cancel run %s?", c.Args().First()); err != nil {
							return err
						}
					}
					return runAction("POST", "/cancel", "cancel ID", nil)(c)
				}},
			{Name: "retry", ArgsUsage: "ID", Usage: "resume a failed run at its failed step", Flags: clientFlags(), Action: runAction("POST", "/retry", "retry ID", nil)},
		},
	}
}
