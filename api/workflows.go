package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
	"rotor.sh/rotor/workflow"
)

// workflowJSON is a definition as the API shows it: the steps as written
// (templates, never resolved values).
type workflowJSON struct {
	Name       string          `json:"name"`
	Version    int64           `json:"version"`
	Definition json.RawMessage `json:"definition"`
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
}

func toWorkflowJSON(w storage.Workflow) workflowJSON {
	return workflowJSON{Name: w.Name, Version: w.Version, Definition: w.Definition, CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt}
}

type stepJSON struct {
	ID              string          `json:"id"`
	Status          string          `json:"status"`
	Attempts        []attemptJSON   `json:"attempts"`
	Output          json.RawMessage `json:"output,omitempty"`
	OutputTruncated bool            `json:"output_truncated,omitempty"`
	ErrorCode       string          `json:"error_code,omitempty"`
	StartedAt       *time.Time      `json:"started_at,omitempty"`
	FinishedAt      *time.Time      `json:"finished_at,omitempty"`
}

type signalJSON struct {
	Name       string          `json:"name"`
	Data       json.RawMessage `json:"data,omitempty"`
	ReceivedAt time.Time       `json:"received_at"`
	UsedBy     string          `json:"used_by,omitempty"`
}

type runJSON struct {
	ID             string          `json:"id"`
	Workflow       string          `json:"workflow"`
	Version        int64           `json:"version"`
	Status         string          `json:"status"`
	Input          json.RawMessage `json:"input"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	CurrentStep    *string         `json:"current_step"`
	Steps          []stepJSON      `json:"steps"`
	Signals        []signalJSON    `json:"signals"`
	WaitingFor     string          `json:"waiting_for,omitempty"`
	WakeAt         *time.Time      `json:"wake_at,omitempty"`
	ErrorCode      string          `json:"error_code,omitempty"`
	StartedBy      string          `json:"started_by"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
	FinishedAt     *time.Time      `json:"finished_at"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func toRunJSON(r storage.WorkflowRun) runJSON {
	out := runJSON{ID: r.ID, Workflow: r.Workflow, Version: r.Version, Status: r.Status, Input: r.Input, IdempotencyKey: r.IdempotencyKey,
		Steps: []stepJSON{}, Signals: []signalJSON{}, WaitingFor: r.WaitingFor, ErrorCode: r.ErrorCode, StartedBy: r.StartedBy,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, FinishedAt: timePtr(r.FinishedAt)}
	if !storage.RunFinished(r.Status) {
		out.WakeAt = timePtr(r.WakeAt)
	}
	if r.Step < len(r.Steps) && !storage.RunFinished(r.Status) || r.Status == storage.RunFailed && r.Step < len(r.Steps) {
		id := r.Steps[r.Step].ID
		out.CurrentStep = &id
	}
	for _, st := range r.Steps {
		sj := stepJSON{ID: st.ID, Status: st.Status, Attempts: []attemptJSON{}, Output: st.Output, OutputTruncated: st.OutputTruncated,
			ErrorCode: st.ErrorCode, StartedAt: timePtr(st.StartedAt), FinishedAt: timePtr(st.FinishedAt)}
		for _, a := range st.Attempts {
			sj.Attempts = append(sj.Attempts, attemptJSON{N: a.N, StartedAt: a.StartedAt, DurationMS: float64(a.Duration.Microseconds()) / 1000,
				StatusCode: a.StatusCode, ErrorCode: a.ErrorCode})
		}
		out.Steps = append(out.Steps, sj)
	}
	for _, sg := range r.Signals {
		out.Signals = append(out.Signals, signalJSON{Name: sg.Name, Data: sg.Data, ReceivedAt: sg.ReceivedAt, UsedBy: sg.UsedBy})
	}
	return out
}

func (s *Server) putWorkflow(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	var raw json.RawMessage
	if err := decodeJSON(w, r, &raw); err != nil {
		return err
	}
	wf, created, err := s.workflows.PutWorkflow(r.Context(), actor, r.PathValue("name"), raw)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/workflows/"+wf.Name)
	}
	writeJSON(w, status, toWorkflowJSON(wf))
	return nil
}

func (s *Server) listWorkflows(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	ws, err := s.workflows.ListWorkflows(r.Context(), actor)
	if err != nil {
		return err
	}
	out := make([]workflowJSON, 0, len(ws))
	for _, wf := range ws {
		out = append(out, toWorkflowJSON(wf))
	}
	writeJSON(w, http.StatusOK, map[string]any{"workflows": out})
	return nil
}

func (s *Server) getWorkflow(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	wf, err := s.workflows.GetWorkflow(r.Context(), actor, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toWorkflowJSON(wf))
	return nil
}

func (s *Server) deleteWorkflow(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	if err := s.workflows.DeleteWorkflow(r.Context(), actor, r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type startRunBody struct {
	Input          json.RawMessage `json:"input"`
	IdempotencyKey string          `json:"idempotency_key"`
}

func (s *Server) startRun(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	var body startRunBody
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	key, err := idempotencyKey(r.Header, body.IdempotencyKey)
	if err != nil {
		return err
	}
	run, existing, err := s.workflows.StartRun(r.Context(), actor, r.PathValue("name"), workflow.StartRunRequest{Input: body.Input, IdempotencyKey: key})
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if existing {
		w.Header().Set("Idempotent-Replayed", "true")
		status = http.StatusOK
	}
	w.Header().Set("Location", "/v1/workflow-runs/"+run.ID)
	writeJSON(w, status, toRunJSON(run))
	return nil
}

var runListParams = map[string]bool{"status": true, "cursor": true, "limit": true, "workflow": true}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	q := r.URL.Query()
	for k := range q {
		if !runListParams[k] || (k == "workflow" && r.PathValue("name") != "") {
			allowed := "status, cursor, limit"
			if r.PathValue("name") == "" {
				allowed += ", workflow"
			}
			return badRequest(CodeInvalidQuery, "unknown query parameter "+strconv.Quote(truncate(k, 40))+" (allowed: "+allowed+")")
		}
	}
	rq := storage.RunQuery{Workflow: r.PathValue("name"), Status: q.Get("status"), Before: q.Get("cursor")}
	if rq.Workflow == "" {
		rq.Workflow = q.Get("workflow")
	}
	var err error
	if rq.Limit, err = pageLimit(q); err != nil {
		return err
	}
	switch rq.Status {
	case "", storage.RunRunning, storage.RunWaiting, storage.RunCompleted, storage.RunFailed, storage.RunCanceled:
	default:
		return badRequest(CodeInvalidQuery, "status must be running, waiting, completed, failed or canceled")
	}
	page, err := s.workflows.ListRuns(r.Context(), actor, rq)
	if err != nil {
		return err
	}
	writePage(w, "runs", page.Runs, page.Next, toRunJSON)
	return nil
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	run, err := s.workflows.GetRun(r.Context(), actor, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toRunJSON(run))
	return nil
}

type signalBody struct {
	Data json.RawMessage `json:"data"`
}

func (s *Server) signalRun(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	var body signalBody
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &body); err != nil {
			return err
		}
	}
	run, err := s.workflows.Signal(r.Context(), actor, r.PathValue("id"), r.PathValue("signal"), body.Data)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, toRunJSON(run))
	return nil
}

func (s *Server) cancelRun(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	run, err := s.workflows.Cancel(r.Context(), actor, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toRunJSON(run))
	return nil
}

func (s *Server) retryRun(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	run, err := s.workflows.Retry(r.Context(), actor, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toRunJSON(run))
	return nil
}

func (s *Server) workflowRoutes() {
	s.route("/v1/workflows", map[string]http.HandlerFunc{
		http.MethodGet: s.authed(vault.RoleMember, s.listWorkflows),
	})
	s.route("/v1/workflows/{name}", map[string]http.HandlerFunc{
		http.MethodPut:    s.authed(vault.RoleMember, s.putWorkflow),
		http.MethodGet:    s.authed(vault.RoleMember, s.getWorkflow),
		http.MethodDelete: s.authed(vault.RoleMember, s.deleteWorkflow),
	})
	s.route("/v1/workflows/{name}/runs", map[string]http.HandlerFunc{
		http.MethodPost: s.authed(vault.RoleMember, s.startRun),
		http.MethodGet:  s.authed(vault.RoleMember, s.listRuns),
	})
	s.route("/v1/workflow-runs", map[string]http.HandlerFunc{
		http.MethodGet: s.authed(vault.RoleMember, s.listRuns),
	})
	s.route("/v1/workflow-runs/{id}", map[string]http.HandlerFunc{
		http.MethodGet: s.authed(vault.RoleMember, s.getRun),
	})
	s.route("/v1/workflow-runs/{id}/signals/{signal}", map[string]http.HandlerFunc{
		http.MethodPost: s.authed(vault.RoleMember, s.signalRun),
	})
	s.route("/v1/workflow-runs/{id}/cancel", map[string]http.HandlerFunc{
		http.MethodPost: s.authed(vault.RoleMember, s.cancelRun),
	})
	s.route("/v1/workflow-runs/{id}/retry", map[string]http.HandlerFunc{
		http.MethodPost: s.authed(vault.RoleMember, s.retryRun),
	})
}
