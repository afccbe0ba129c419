package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

type queueOut struct {
	Name            string            `json:"name"`
	CallbackURL     string            `json:"callback_url"`
	CallbackHeaders map[string]string `json:"callback_headers"`
	MaxAttempts     int               `json:"max_attempts"`
	TimeoutSeconds  float64           `json:"timeout_seconds"`
	Concurrency     int               `json:"concurrency"`
	UpdatedAt       time.Time         `json:"updated_at"`
}

func queueRows(qs ...queueOut) [][]string {
	var rows [][]string
	for _, q := range qs {
		var hs []string
		for k, v := range q.CallbackHeaders {
			hs = append(hs, k+": "+v)
		}
		h := strings.Join(hs, "; ")
		if h == "" {
			h = "-"
		}
		rows = append(rows, []string{q.Name, q.CallbackURL, h, fmt.Sprint(q.MaxAttempts), fmt.Sprint(q.Concurrency)})
	}
	return rows
}

var queueHeader = []string{"NAME", "CALLBACK URL", "HEADERS", "MAX ATTEMPTS", "CONCURRENCY"}

func queueSpecFlags() []cli.Flag {
	return append(clientFlags(),
		&cli.StringFlag{Name: "callback-url", Usage: "callback URL; may reference secrets: ${{ secrets.NAME }}"},
		&cli.StringSliceFlag{Name: "header", Usage: "callback header Name=Value (repeatable; values may reference secrets)"},
		&cli.IntFlag{Name: "max-attempts"},
		&cli.Float64Flag{Name: "timeout-seconds"},
		&cli.IntFlag{Name: "concurrency"},
		&cli.Float64Flag{Name: "rate-per-second"},
	)
}

func queueBody(c *cli.Context) (map[string]any, error) {
	body := map[string]any{}
	if c.IsSet("callback-url") {
		body["callback_url"] = c.String("callback-url")
	}
	if c.IsSet("header") {
		h := map[string]string{}
		for _, kv := range c.StringSlice("header") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, fmt.Errorf("--header %q: want Name=Value", kv)
			}
			h[strings.TrimSpace(k)] = v
		}
		body["callback_headers"] = h
	}
	for flag, field := range map[string]string{"max-attempts": "max_attempts", "concurrency": "concurrency"} {
		if c.IsSet(flag) {
			body[field] = c.Int(flag)
		}
	}
	for flag, field := range map[string]string{"timeout-seconds": "timeout_seconds", "rate-per-second": "rate_per_second"} {
		if c.IsSet(flag) {
			body[field] = c.Float64(flag)
		}
	}
	return body, nil
}

func queuesCommand() *cli.Command {
	return &cli.Command{
		Name:  "queues",
		Usage: "manage queues (callback destinations)",
		Subcommands: []*cli.Command{
			{Name: "create", ArgsUsage: "NAME", Usage: "create a queue", Flags: queueSpecFlags(), Action: func(c *cli.Context) error {
				name, err := oneArg(c, "queues create NAME --callback-url URL")
				if err != nil {
					return err
				}
				body, err := queueBody(c)
				if err != nil {
					return err
				}
				body["name"] = name
				return show(c, "POST", "/v1/queues", body, queueHeader, func(q queueOut) [][]string { return queueRows(q) })
			}},
			{Name: "update", ArgsUsage: "NAME", Usage: "change a queue (creates it when --callback-url is given and it does not exist)", Flags: queueSpecFlags(), Action: func(c *cli.Context) error {
				name, err := oneArg(c, "queues update NAME [flags]")
				if err != nil {
					return err
				}
				body, err := queueBody(c)
				if err != nil {
					return err
				}
				return show(c, "PATCH", "/v1/queues/"+url.PathEscape(name), body, queueHeader, func(q queueOut) [][]string { return queueRows(q) })
			}},
			{Name: "get", ArgsUsage: "NAME", Flags: clientFlags(), Action: func(c *cli.Context) error {
				name, err := oneArg(c, "queues get NAME")
				if err != nil {
					return err
				}
				return show(c, "GET", "/v1/queues/"+url.PathEscape(name), nil, queueHeader, func(q queueOut) [][]string { return queueRows(q) })
			}},
			{Name: "list", Flags: clientFlags(), Action: func(c *cli.Context) error {
				return show(c, "GET", "/v1/queues", nil, queueHeader, func(r struct {
					Queues []queueOut `json:"queues"`
				}) [][]string {
					return queueRows(r.Queues...)
				})
			}},
			{Name: "delete", ArgsUsage: "NAME", Flags: append(clientFlags(), &cli.BoolFlag{Name: "yes"}), Action: func(c *cli.Context) error {
				name, err := oneArg(c, "queues delete NAME")
				if err != nil {
					return err
				}
				a, err := newClient(c)
				if err != nil {
					return err
				}
				if !c.Bool("yes") {
					if err := confirm(c, fmt.Sprintf("Delete queue %s and cancel its pending jobs? [y/N] ", name)); err != nil {
						return err
					}
				}
				if err := a.do(c.Context, "DELETE", "/v1/queues/"+url.PathEscape(name), nil, nil); err != nil {
					return err
				}
				fmt.Fprintf(a.out, "deleted %s\n", name)
				return nil
			}},
		},
	}
}

type attemptOut struct {
	N          int     `json:"n"`
	DurationMS float64 `json:"duration_ms"`
	StatusCode int     `json:"status_code"`
	ErrorCode  string  `json:"error_code"`
}

type jobOut struct {
	ID        string       `json:"id"`
	Queue     string       `json:"queue"`
	Status    string       `json:"status"`
	RunAt     time.Time    `json:"run_at"`
	Attempts  []attemptOut `json:"attempts"`
	CreatedAt time.Time    `json:"created_at"`
}

func jobRows(js ...jobOut) [][]string {
	var rows [][]string
	for _, j := range js {
		last := "-"
		if n := len(j.Attempts); n > 0 {
			a := j.Attempts[n-1]
			last = fmt.Sprintf("#%d %d %s %.1fms", a.N, a.StatusCode, a.ErrorCode, a.DurationMS)
		}
		rows = append(rows, []string{j.ID, j.Queue, j.Status, fmt.Sprint(len(j.Attempts)), last, fmtTime(&j.CreatedAt)})
	}
	return rows
}

var jobHeader = []string{"ID", "QUEUE", "STATUS", "ATTEMPTS", "LAST ATTEMPT", "CREATED"}

func jobsCommand() *cli.Command {
	idArg := func(c *cli.Context, usage string) (string, error) {
		if c.NArg() != 1 {
			return "", fmt.Errorf("usage: rotor jobs %s", usage)
		}
		return c.Args().First(), nil
	}
	jobAction := func(method, suffix, usage string) cli.ActionFunc {
		return func(c *cli.Context) error {
			id, err := idArg(c, usage)
			if err != nil {
				return err
			}
			return show(c, method, "/v1/jobs/"+url.PathEscape(id)+suffix, nil, jobHeader, func(j jobOut) [][]string { return jobRows(j) })
		}
	}
	return &cli.Command{
		Name:  "jobs",
		Usage: "enqueue and inspect jobs",
		Subcommands: []*cli.Command{
			{
				Name: "enqueue", ArgsUsage: "QUEUE", Usage: "enqueue a job; --wait prints the first attempt's outcome (the guide's test job)",
				Flags: append(clientFlags(),
					&cli.StringFlag{Name: "payload", Value: "{}", Usage: "JSON payload (string fields may reference secrets)"},
					&cli.Float64Flag{Name: "delay-seconds"},
					&cli.StringFlag{Name: "idempotency-key"},
					&cli.BoolFlag{Name: "wait", Usage: "wait for the first attempt"},
					&cli.DurationFlag{Name: "wait-timeout", Value: time.Minute},
				),
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return errors.New("usage: rotor jobs enqueue QUEUE [--payload JSON] [--wait]")
					}
					a, err := newClient(c)
					if err != nil {
						return err
					}
					payload := json.RawMessage(c.String("payload"))
					if !json.Valid(payload) {
						return errors.New("--payload is not valid JSON")
					}
					body := map[string]any{"payload": payload}
					if c.IsSet("delay-seconds") {
						body["delay_seconds"] = c.Float64("delay-seconds")
					}
					if k := c.String("idempotency-key"); k != "" {
						body["idempotency_key"] = k
					}
					var j jobOut
					if err := a.do(c.Context, "POST", "/v1/queues/"+url.PathEscape(c.Args().First())+"/jobs", body, &j); err != nil {
						return err
					}
					if !c.Bool("wait") {
						return a.print(j, jobHeader, jobRows(j))
					}
					deadline := time.Now().Add(c.Duration("wait-timeout"))
					for len(j.Attempts) == 0 && j.Status != "canceled" {
						if time.Now().After(deadline) {
							return fmt.Errorf("job %s: no attempt within %v", j.ID, c.Duration("wait-timeout"))
						}
						time.Sleep(100 * time.Millisecond)
						if err := a.do(c.Context, "GET", "/v1/jobs/"+url.PathEscape(j.ID), nil, &j); err != nil {
							return err
						}
					}
					if err := a.print(j, jobHeader, jobRows(j)); err != nil {
						return err
					}
					if len(j.Attempts) > 0 && j.Attempts[0].ErrorCode != "" {
						at := j.Attempts[0]
						return fmt.Errorf("job %s: first attempt failed: %s (status %d)", j.ID, at.ErrorCode, at.StatusCode)
					}
					return nil
				},
			},
			{Name: "get", ArgsUsage: "JOB_ID", Flags: clientFlags(), Action: jobAction("GET", "", "get JOB_ID")},
			{Name: "retry", ArgsUsage: "JOB_ID", Flags: clientFlags(), Action: jobAction("POST", "/retry", "retry JOB_ID")},
			{Name: "cancel", ArgsUsage: "JOB_ID", Flags: clientFlags(), Action: jobAction("DELETE", "", "cancel JOB_ID")},
			{
				Name: "list", ArgsUsage: "QUEUE", Flags: append(clientFlags(), &cli.StringFlag{Name: "status"}, &cli.IntFlag{Name: "limit", Value: 50}),
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return errors.New("usage: rotor jobs list QUEUE [--status dead]")
					}
					a, err := newClient(c)
					if err != nil {
						return err
					}
					q := url.Values{"limit": {fmt.Sprint(c.Int("limit"))}}
					if s := c.String("status"); s != "" {
						q.Set("status", s)
					}
					var res struct {
						Jobs []jobOut `json:"jobs"`
					}
					if err := a.do(c.Context, "GET", "/v1/queues/"+url.PathEscape(c.Args().First())+"/jobs?"+q.Encode(), nil, &res); err != nil {
						return err
					}
					return a.print(res, jobHeader, jobRows(res.Jobs...))
				},
			},
		},
	}
}

func auditCommand() *cli.Command {
	return &cli.Command{
		Name:  "audit",
		Usage: "read the audit trail",
		Subcommands: []*cli.Command{{
			Name: "list", Usage: "audit events, newest first",
			Flags: append(clientFlags(),
				&cli.StringFlag{Name: "resource-type"}, &cli.StringFlag{Name: "event-type"}, &cli.StringFlag{Name: "resource-id"},
				&cli.StringFlag{Name: "since", Usage: "RFC 3339 time"}, &cli.IntFlag{Name: "limit", Value: 50},
			),
			Action: func(c *cli.Context) error {
				a, err := newClient(c)
				if err != nil {
					return err
				}
				q := url.Values{"limit": {fmt.Sprint(c.Int("limit"))}}
				for _, f := range []string{"resource-type", "event-type", "resource-id", "since"} {
					if v := c.String(f); v != "" {
						q.Set(strings.ReplaceAll(f, "-", "_"), v)
					}
				}
				var res struct {
					Events []struct {
						ID           int64           `json:"id"`
						OccurredAt   time.Time       `json:"occurred_at"`
						ActorID      string          `json:"actor_id"`
						EventType    string          `json:"event_type"`
						ResourceType string          `json:"resource_type"`
						ResourceID   string          `json:"resource_id"`
						Input        json.RawMessage `json:"input"`
					} `json:"events"`
				}
				if err := a.do(c.Context, "GET", "/v1/audit?"+q.Encode(), nil, &res); err != nil {
					return err
				}
				var rows [][]string
				for _, e := range res.Events {
					rows = append(rows, []string{e.OccurredAt.UTC().Format(time.RFC3339), e.EventType, e.ResourceType + ":" + e.ResourceID, e.ActorID})
				}
				return a.print(res, []string{"OCCURRED", "EVENT", "RESOURCE", "ACTOR"}, rows)
			},
		}, {
			Name: "verify", Usage: "check the audit chain: exit 1 naming the first edited, deleted, reordered or truncated row",
			Flags: clientFlags(),
			Action: func(c *cli.Context) error {
				a, err := newClient(c)
				if err != nil {
					return err
				}
				var res struct {
					OK            bool       `json:"ok"`
					Rows          int64      `json:"rows"`
					LastID        int64      `json:"last_id"`
					SealedThrough int64      `json:"sealed_through"`
					SealedAt      *time.Time `json:"sealed_at,omitempty"`
					FirstBadID    int64      `json:"first_bad_id,omitempty"`
					Problem       string     `json:"problem,omitempty"`
				}
				if err := a.do(c.Context, "GET", "/v1/audit/verify", nil, &res); err != nil {
					return err
				}
				if a.output == "json" {
					if err := a.print(res, nil, nil); err != nil {
						return err
					}
				} else if res.OK {
					fmt.Fprintf(a.out, "audit trail intact: %d rows, last row %d, sealed through row %d at %s\n", res.Rows, res.LastID, res.SealedThrough, fmtTime(res.SealedAt))
				}
				if !res.OK {
					if res.FirstBadID != 0 {
						return fmt.Errorf("audit trail tampered with at row %d: %s", res.FirstBadID, res.Problem)
					}
					return fmt.Errorf("audit trail tampered with: %s", res.Problem)
				}
				return nil
			},
		}},
	}
}
