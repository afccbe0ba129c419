package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"rotor.sh/rotor/dispatch"
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

// queueSpecFlags are the flags of `queues create` (withDefaults: the
// server's defaults, shown in help) and `queues update` (unset flags leave
// the queue's value as it is).
func queueSpecFlags(withDefaults bool) []cli.Flag {
	// DefaultText, not Value: an unset flag is not sent, so the server's
	// default (create) or the queue's current value (update) applies.
	def := func(v string) string {
		if withDefaults {
			return v
		}
		return "unchanged"
	}
	return append(clientFlags(),
		&cli.StringFlag{Name: "callback-url", Usage: "callback URL; may reference secrets: ${{ secrets.NAME }}"},
		&cli.StringSliceFlag{Name: "header", Usage: "callback header 'Name: value' (repeatable; values may reference secrets)"},
		&cli.IntFlag{Name: "max-attempts", Usage: fmt.Sprintf("deliveries tried before the job is dead, 1-%d", dispatch.MaxAttemptsLimit), DefaultText: def(fmt.Sprint(dispatch.DefaultMaxAttempts))},
		&cli.Float64Flag{Name: "backoff-base-seconds", Usage: "first retry delay; doubles each attempt, with full jitter", DefaultText: def(fmt.Sprint(dispatch.DefaultBackoffBase.Seconds()))},
		&cli.Float64Flag{Name: "backoff-cap-seconds", Usage: "longest retry delay", DefaultText: def(fmt.Sprint(dispatch.DefaultBackoffCap.Seconds()))},
		&cli.Float64Flag{Name: "timeout-seconds", Usage: "time allowed for one delivery", DefaultText: def(fmt.Sprint(dispatch.DefaultTimeout.Seconds()))},
		&cli.IntFlag{Name: "concurrency", Usage: "deliveries in flight at once", DefaultText: def(fmt.Sprint(dispatch.DefaultConcurrency))},
		&cli.Float64Flag{Name: "rate-per-second", Usage: "deliveries started per second, 0 for no limit", DefaultText: def("0")},
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
			// One syntax everywhere, as HTTP writes it: "Name: value".
			k, v, ok := strings.Cut(kv, ":")
			if !ok || strings.TrimSpace(k) == "" {
				return nil, fmt.Errorf("--header %q: want 'Name: value'", kv)
			}
			h[strings.TrimSpace(k)] = strings.TrimLeft(v, " \t")
		}
		body["callback_headers"] = h
	}
	for flag, field := range map[string]string{"max-attempts": "max_attempts", "concurrency": "concurrency"} {
		if c.IsSet(flag) {
			body[field] = c.Int(flag)
		}
	}
	for flag, field := range map[string]string{"timeout-seconds": "timeout_seconds", "rate-per-second": "rate_per_second",
		"backoff-base-seconds": "backoff_base_seconds", "backoff-cap-seconds": "backoff_cap_seconds"} {
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
			{Name: "create", ArgsUsage: "NAME", Usage: "create a queue", Flags: queueSpecFlags(true), Action: func(c *cli.Context) error {
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
			{Name: "update", ArgsUsage: "NAME", Usage: "change a queue (creates it when --callback-url is given and it does not exist)", Flags: queueSpecFlags(false), Action: func(c *cli.Context) error {
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
			{Name: "get", ArgsUsage: "NAME", Usage: "show a queue (templates as stored, never values)", Flags: clientFlags(), Action: func(c *cli.Context) error {
				name, err := oneArg(c, "queues get NAME")
				if err != nil {
					return err
				}
				return show(c, "GET", "/v1/queues/"+url.PathEscape(name), nil, queueHeader, func(q queueOut) [][]string { return queueRows(q) })
			}},
			{Name: "list", Usage: "list the workspace's queues", Flags: clientFlags(), Action: func(c *cli.Context) error {
				return show(c, "GET", "/v1/queues", nil, queueHeader, func(r struct {
					Queues []queueOut `json:"queues"`
				}) [][]string {
					return queueRows(r.Queues...)
				})
			}},
			{Name: "delete", ArgsUsage: "NAME", Usage: "delete a queue and cancel its undelivered jobs", Flags: append(clientFlags(), yesFlag()), Action: func(c *cli.Context) error {
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
					&cli.Float64Flag{Name: "delay-seconds", Usage: "deliver no earlier than this many seconds from now", DefaultText: "0"},
					&cli.StringFlag{Name: "idempotency-key", Usage: "a job with the same key in the last 24 h is not enqueued again (the first is returned)"},
					&cli.BoolFlag{Name: "wait", Usage: "wait for the first attempt"},
					&cli.DurationFlag{Name: "wait-timeout", Value: time.Minute, Usage: "with --wait: give up after this long"},
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
			{Name: "get", ArgsUsage: "JOB_ID", Usage: "show a job: status, payload (template), attempts", Flags: clientFlags(), Action: jobAction("GET", "", "get JOB_ID")},
			{Name: "retry", ArgsUsage: "JOB_ID", Usage: "deliver a dead or canceled job again, now, with a fresh attempt budget", Flags: clientFlags(), Action: jobAction("POST", "/retry", "retry JOB_ID")},
			{Name: "cancel", Usage: "cancel a job not yet delivered", ArgsUsage: "JOB_ID", Flags: append(clientFlags(), yesFlag()), Action: func(c *cli.Context) error {
				if c.NArg() == 1 {
					if err := confirmed(c, "Cancel job %s? It will not be delivered.", c.Args().First()); err != nil {
						return err
					}
				}
				return jobAction("DELETE", "", "jobs cancel JOB_ID [--yes]")(c)
			}},
			{
				Name: "list", ArgsUsage: "QUEUE", Usage: "list a queue's jobs, newest first",
				Flags: append(clientFlags(), &cli.StringFlag{Name: "status", Usage: "only jobs in this status: queued, leased, delivered, dead, canceled"},
					&cli.IntFlag{Name: "limit", Value: 50, Usage: "at most this many"}),
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
				&cli.StringFlag{Name: "resource-type", Usage: "only this kind of resource: secret, key, queue, job, workspace, ..."},
				&cli.StringFlag{Name: "event-type", Usage: "only this event, e.g. secret.accessed"},
				&cli.StringFlag{Name: "resource-id", Usage: "only this resource (a secret name, a key id, ...)"},
				&cli.StringFlag{Name: "since", Usage: "RFC 3339 time"}, &cli.IntFlag{Name: "limit", Value: 50, Usage: "at most this many rows"},
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
			Flags: append(clientFlags(), &cli.StringFlag{Name: flagAgainst, Usage: "also check the trail against an --audit-export file (JSON Lines)"}),
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
					PrunedThrough int64      `json:"pruned_through,omitempty"`
					PrunedRows    int64      `json:"pruned_rows,omitempty"`
					PrunedAt      *time.Time `json:"pruned_at,omitempty"`
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
					if res.PrunedRows > 0 {
						fmt.Fprintf(a.out, "pruned by retention: %d rows, through row %d, last at %s (the trail verifies from the sealed marker)\n", res.PrunedRows, res.PrunedThrough, fmtTime(res.PrunedAt))
					}
				}
				if !res.OK {
					if res.FirstBadID != 0 {
						return fmt.Errorf("audit trail tampered with at row %d: %s", res.FirstBadID, res.Problem)
					}
					return fmt.Errorf("audit trail tampered with: %s", res.Problem)
				}
				if path := c.String(flagAgainst); path != "" {
					msg, err := checkAgainst(c.Context, a, path, res.PrunedThrough)
					if err != nil {
						return err
					}
					fmt.Fprintln(a.out, msg)
				}
				return nil
			},
		}},
	}
}
