package web

import (
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/proxy"
	"rotor.sh/rotor/storage"
	rtemplate "rotor.sh/rotor/template"
	"rotor.sh/rotor/workflow"
)

// errNoWorkflows: this node serves no workflows (built without a workflow
// service).
var errNoWorkflows = errors.New("workflows are not served by this node")

const (
	// runsPerPage is one page of a workflow's runs.
	runsPerPage = 25
	// runCountCap bounds the runs counted per workflow and status on the
	// workflows list ("100+").
	runCountCap = 100
	// countedWorkflows bounds the workflows whose runs the list counts (five
	// bounded reads each); the rest link to their own page.
	countedWorkflows = 50
	// outputExcerpt bounds the output shown per step; the API has the rest.
	outputExcerpt = 2048
	// outputOpen: outputs up to this size show unfolded.
	outputOpen = 600
)

var runStatuses = []string{storage.RunRunning, storage.RunWaiting, storage.RunCompleted, storage.RunFailed, storage.RunCanceled}

func workflowPath(name string) string { return "/dashboard/workflows/" + url.PathEscape(name) }
func runPath(id string) string        { return "/dashboard/workflow-runs/" + url.PathEscape(id) }

// statusCount is one status's runs of a workflow, capped.
type statusCount struct {
	Status string
	N      string
}

type workflowRow struct {
	storage.Workflow
	Steps   int
	Counts  []statusCount
	Counted bool
}

func (d *Dashboard) workflowsPage(q *req) {
	if d.flows == nil {
		d.fail(q, "workflows", map[string]any{}, errNoWorkflows)
		return
	}
	ws, err := d.flows.ListWorkflows(q.r.Context(), q.actor)
	rows := make([]workflowRow, 0, len(ws))
	for _, w := range ws {
		row := workflowRow{Workflow: w}
		if def, perr := workflow.ParseDefinition(w.Definition); perr == nil {
			row.Steps = len(def.Steps)
		}
		row.Counted = len(rows) < countedWorkflows
		for _, st := range runStatuses {
			if !row.Counted {
				break
			}
			page, lerr := d.flows.ListRuns(q.r.Context(), q.actor, storage.RunQuery{Workflow: w.Name, Status: st, Limit: runCountCap})
			if lerr != nil {
				err = errors.Join(err, lerr)
				break
			}
			if n := len(page.Runs); n > 0 {
				s := strconv.Itoa(n)
				if page.Next != "" {
					s += "+"
				}
				row.Counts = append(row.Counts, statusCount{Status: st, N: s})
			}
		}
		rows = append(rows, row)
	}
	data := map[string]any{"Workflows": rows}
	if err != nil {
		d.fail(q, "workflows", data, err)
		return
	}
	d.render(q.w, q.r, "workflows", q, data, nil)
}

// stepView is a definition step as the dashboard shows it: templates as
// written, secret references marked as references.
type stepView struct {
	N       int
	ID      string
	Kind    string
	Method  string
	URL     template.HTML
	Headers []kvHTML
	Body    template.HTML
	Sleep   string
	Signal  string
	Timeout string
	Retry   string
}

type kvHTML struct {
	K string
	V template.HTML
}

// refRE finds secret references and engine expressions in a template.
var refRE = regexp.MustCompile(`\$\{\{.*?\}\}|\$<<.*?>>`)

// markRefs escapes a template string and marks its expressions: secret
// references (what the proxy resolves) and engine expressions (input,
// steps, signals) look different from literal text, and none is resolved.
func markRefs(s string) template.HTML {
	var b strings.Builder
	last := 0
	for _, m := range refRE.FindAllStringIndex(s, -1) {
		b.WriteString(template.HTMLEscapeString(s[last:m[0]]))
		expr := s[m[0]:m[1]]
		class := "expr"
		if names, err := rtemplate.References(expr, rtemplate.ContextRaw); err == nil && len(names) > 0 {
			class = "ref"
		}
		b.WriteString(`<span class="` + class + `">` + template.HTMLEscapeString(expr) + `</span>`)
		last = m[1]
	}
	b.WriteString(template.HTMLEscapeString(s[last:]))
	return template.HTML(b.String()) //nolint:gosec // every piece is escaped above
}

func stepViews(raw json.RawMessage) []stepView {
	def, err := workflow.ParseDefinition(raw)
	if err != nil {
		return nil
	}
	out := make([]stepView, 0, len(def.Steps))
	for i, st := range def.Steps {
		v := stepView{N: i + 1, ID: st.ID, Timeout: st.Timeout}
		switch {
		case st.Request != nil:
			v.Kind = "request"
			v.Method, v.URL = st.Request.Method, markRefs(st.Request.URL)
			for _, h := range sortedKV(st.Request.Headers) {
				v.Headers = append(v.Headers, kvHTML{K: h.K, V: markRefs(h.V)})
			}
			if len(st.Request.Body) > 0 {
				var s string
				if json.Unmarshal(st.Request.Body, &s) == nil {
					v.Body = markRefs(s)
				} else {
					v.Body = markRefs(unescapeHTMLJSON(prettyJSON(st.Request.Body)))
				}
			}
			if st.Retry != nil {
				v.Retry = "up to " + strconv.Itoa(st.Retry.MaxAttempts) + " attempts"
			}
		case st.Sleep != "":
			v.Kind, v.Sleep = "sleep", st.Sleep
		case st.WaitForSignal != "":
			v.Kind, v.Signal = "wait_for_signal", st.WaitForSignal
		}
		out = append(out, v)
	}
	return out
}

type workflowData struct {
	Workflow storage.Workflow
	Steps    []stepView
	Status   string
	Runs     []storage.WorkflowRun
	Next     string
	Input    string
	Key      string
}

func (d *Dashboard) workflowPage(q *req) { d.showWorkflow(q, "{}", "", nil) }

func (d *Dashboard) showWorkflow(q *req, input, key string, err error) {
	name := q.r.PathValue("name")
	data := workflowData{Workflow: storage.Workflow{Name: name}, Status: q.r.URL.Query().Get("status"), Input: input, Key: key}
	if d.flows == nil {
		d.fail(q, "workflow", data, errNoWorkflows)
		return
	}
	w, gerr := d.flows.GetWorkflow(q.r.Context(), q.actor, name)
	if gerr != nil {
		d.fail(q, "workflow", data, gerr)
		return
	}
	data.Workflow, data.Steps = w, stepViews(w.Definition)
	page, lerr := d.flows.ListRuns(q.r.Context(), q.actor, storage.RunQuery{Workflow: name, Status: data.Status,
		Before: q.r.URL.Query().Get("before"), Limit: runsPerPage})
	data.Runs, data.Next = page.Runs, page.Next
	if err == nil {
		err = lerr
	}
	if err != nil {
		d.fail(q, "workflow", data, err)
		return
	}
	d.render(q.w, q.r, "workflow", q, data, nil)
}

func (d *Dashboard) startRun(q *req) {
	input, key := q.r.PostForm.Get("input"), strings.TrimSpace(q.r.PostForm.Get("idempotency_key"))
	if d.flows == nil {
		d.showWorkflow(q, input, key, errNoWorkflows)
		return
	}
	run, existing, err := d.flows.StartRun(q.r.Context(), q.actor, q.r.PathValue("name"), workflow.StartRunRequest{Input: json.RawMessage(input), IdempotencyKey: key})
	if err != nil {
		d.showWorkflow(q, input, key, err)
		return
	}
	if existing {
		q.back(runPath(run.ID), "This idempotency key already started "+run.ID)
		return
	}
	q.back(runPath(run.ID), "Started "+run.ID)
}

// attemptRow is one attempt of a step, its error code in words.
type attemptRow struct {
	storage.Attempt
	Words string
}

// timelineStep is one step of a run: its definition beside its state.
type timelineStep struct {
	storage.StepState
	Def      stepView
	Attempts []attemptRow
	Took     time.Duration
	Words    string
	Output   string
	Cut      bool
	// Open: the output is short enough to show unfolded.
	Open      bool
	Current   bool
	Completed bool
}

type runData struct {
	Run      storage.WorkflowRun
	Steps    []timelineStep
	Words    string
	Open     bool
	Names    map[string]string
	Signal   string
	SigData  string
	Finished bool
}

func (d *Dashboard) runPage(q *req) { d.showRun(q, "", "{}", nil) }

func (d *Dashboard) showRun(q *req, signal, sigData string, err error) {
	id := q.r.PathValue("id")
	data := runData{Run: storage.WorkflowRun{ID: id}, Signal: signal, SigData: sigData}
	if d.flows == nil {
		d.fail(q, "run", data, errNoWorkflows)
		return
	}
	run, gerr := d.flows.GetRun(q.r.Context(), q.actor, id)
	if gerr != nil {
		d.fail(q, "run", data, gerr)
		return
	}
	data.Run, data.Words, data.Names = run, errorWords(run.ErrorCode), d.keyNames(q)
	data.Open, data.Finished = !storage.RunFinished(run.Status), storage.RunFinished(run.Status)
	if data.Signal == "" {
		data.Signal = run.WaitingFor
	}
	defs := stepViews(run.Definition)
	now := d.now()
	for i, st := range run.Steps {
		ts := timelineStep{StepState: st, Words: errorWords(st.ErrorCode), Current: i == run.Step && st.Status != storage.StepPending,
			Completed: st.Status == storage.StepCompleted}
		if i < len(defs) {
			ts.Def = defs[i]
		}
		for _, a := range st.Attempts {
			ts.Attempts = append(ts.Attempts, attemptRow{Attempt: a, Words: errorWords(a.ErrorCode)})
		}
		switch {
		case !st.StartedAt.IsZero() && !st.FinishedAt.IsZero():
			ts.Took = st.FinishedAt.Sub(st.StartedAt)
		case !st.StartedAt.IsZero() && data.Open:
			ts.Took = now.Sub(st.StartedAt)
		}
		if len(st.Output) > 0 {
			// A text body is stored as a JSON string: show its text.
			var text string
			if json.Unmarshal(st.Output, &text) == nil {
				ts.Output = text
			} else {
				ts.Output = unescapeHTMLJSON(prettyJSON(st.Output))
			}
			ts.Open = len(ts.Output) <= outputOpen || ts.Current
			if len(ts.Output) > outputExcerpt {
				ts.Output, ts.Cut = clipUTF8(ts.Output, outputExcerpt), true
			}
		}
		data.Steps = append(data.Steps, ts)
	}
	if err != nil {
		d.fail(q, "run", data, err)
		return
	}
	d.render(q.w, q.r, "run", q, data, nil)
}

// unescapeHTMLJSON turns the \u003c, \u003e and \u0026 escapes Go's
// encoder writes back into <, > and &, so a body shows as it was written
// ($<< secrets.X >>); the page escapes it for HTML afterwards.
func unescapeHTMLJSON(s string) string {
	if !strings.Contains(s, `\u00`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		if s[i+1] == 'u' && i+6 <= len(s) {
			switch s[i+2 : i+6] {
			case "003c":
				b.WriteByte('<')
				i += 5
				continue
			case "003e":
				b.WriteByte('>')
				i += 5
				continue
			case "0026":
				b.WriteByte('&')
				i += 5
				continue
			}
		}
		b.WriteString(s[i : i+2]) // any other escape, \\ included, stays whole
		i++
	}
	return b.String()
}

// clipUTF8 cuts s to at most n bytes on a rune boundary.
func clipUTF8(s string, n int) string {
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

func (d *Dashboard) signalRun(q *req) {
	id := q.r.PathValue("id")
	name, raw := strings.TrimSpace(q.r.PostForm.Get("signal")), q.r.PostForm.Get("data")
	if d.flows == nil {
		d.showRun(q, name, raw, errNoWorkflows)
		return
	}
	if _, err := d.flows.Signal(q.r.Context(), q.actor, id, name, json.RawMessage(raw)); err != nil {
		d.showRun(q, name, raw, err)
		return
	}
	q.back(runPath(id), "Sent the signal "+name)
}

func (d *Dashboard) cancelRun(q *req) {
	id := q.r.PathValue("id")
	if d.flows == nil {
		d.showRun(q, "", "{}", errNoWorkflows)
		return
	}
	if q.r.PostForm.Get("confirm") != "yes" {
		d.showRun(q, "", "{}", errors.New("tick the box to confirm the cancellation"))
		return
	}
	if _, err := d.flows.Cancel(q.r.Context(), q.actor, id); err != nil {
		d.showRun(q, "", "{}", err)
		return
	}
	q.back(runPath(id), "Canceled "+id)
}

func (d *Dashboard) retryRun(q *req) {
	id := q.r.PathValue("id")
	if d.flows == nil {
		d.showRun(q, "", "{}", errNoWorkflows)
		return
	}
	if _, err := d.flows.Retry(q.r.Context(), q.actor, id); err != nil {
		d.showRun(q, "", "{}", err)
		return
	}
	q.back(runPath(id), "Retried "+id+" from its failed step")
}

// errorWords says what a step's or attempt's error code means.
func errorWords(code string) string {
	switch code {
	case "":
		return ""
	case dispatch.ErrCodeTimeout, proxy.CodeUpstreamTimeout:
		return "timed out waiting for the answer"
	case dispatch.ErrCodeConnectionFailed, proxy.CodeUpstreamUnreachable:
		return "could not connect to the destination (refused, DNS or TLS failure)"
	case dispatch.ErrCodeHTTPStatus:
		return "the destination answered with an error status"
	case dispatch.ErrCodeSecretMissing, proxy.CodeSecretNotFound:
		return "a referenced secret does not exist"
	case dispatch.ErrCodeGone:
		return "the destination answered 410 Gone"
	case workflow.ErrCodeExpression:
		return "an expression could not be evaluated (a missing field in an earlier output or the input)"
	case workflow.ErrCodeWaitTimeout:
		return "no signal arrived before the wait's timeout"
	case workflow.ErrCodeActorRevoked:
		return "the API key that started the run (or enqueued the job) was revoked: nothing was sent"
	case proxy.CodeHostNotAllowed:
		return "a secret's allowed hosts do not include this destination"
	case proxy.CodeDestinationBlocked:
		return "the proxy's SSRF guard blocked the destination"
	case proxy.CodeInvalidReference:
		return "a secret reference is malformed"
	case proxy.CodeValueRefused:
		return "the proxy refused a resolved value in this position"
	case proxy.CodeAuditUnavailable, proxy.CodeUnavailable:
		return "the proxy was unavailable (storage or audit)"
	}
	return strings.ReplaceAll(code, "_", " ")
}

// workflowReferences is the References finder of workflows: the steps
// whose templates reference the secret.
func (d *Dashboard) workflowReferences(ctx context.Context, workspaceID, secret string) ([]Reference, error) {
	refs, err := d.flows.WorkflowsReferencing(ctx, workspaceID, secret)
	out := make([]Reference, 0, len(refs))
	for _, r := range refs {
		var where []string
		for _, u := range r.Uses {
			where = append(where, u.Step+" ("+u.Field+")")
		}
		out = append(out, Reference{Kind: "workflow", Name: r.Workflow, Link: workflowPath(r.Workflow), Where: strings.Join(slices.Compact(where), ", ")})
	}
	return out, err
}
