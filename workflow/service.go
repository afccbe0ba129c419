package workflow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
)

// Audit event types and resource types of workflows.
const (
	EventWorkflowCreated = "workflow.created"
	EventWorkflowUpdated = "workflow.updated"
	EventWorkflowDeleted = "workflow.deleted"
	EventRunStarted      = "workflow_run.started"
	EventRunCompleted    = "workflow_run.completed"
	EventRunFailed       = "workflow_run.failed"
	EventRunCanceled     = "workflow_run.canceled"
	EventRunSignaled     = "workflow_run.signaled"
	EventRunRetried      = "workflow_run.retried"
	ResourceWorkflow     = "workflow"
	ResourceRun          = "workflow_run"
)

// Run request bounds.
const (
	MaxInputBytes     = 256 << 10
	MaxSignalBytes    = 64 << 10
	MaxIdempotencyKey = 255
)

// Service is the workflow API's domain logic.
type Service struct {
	store  storage.Store
	vault  *vault.Vault
	now    func() time.Time
	notify func()
	m      *serviceMetrics
}

// NewService returns a Service; notify (may be nil) wakes the engine.
func NewService(store storage.Store, v *vault.Vault, reg prometheus.Registerer, now func() time.Time, notify func()) *Service {
	if now == nil {
		now = time.Now
	}
	if notify == nil {
		notify = func() {}
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &Service{store: store, vault: v, now: now, notify: notify, m: newServiceMetrics(reg)}
}

func notFound(err error, what string) error {
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%w: %s does not exist", vault.ErrNotFound, what)
	}
	return err
}

// signed is e as a batch, with the vault's row nonce and MAC.
func (s *Service) signed(e storage.AuditEvent) []storage.AuditEvent {
	evs := []storage.AuditEvent{e}
	if s.vault != nil {
		s.vault.SignAudit(evs)
	}
	return evs
}

func workflowAudit(actor vault.Actor, typ string, w storage.Workflow, now time.Time) storage.AuditEvent {
	in, _ := json.Marshal(map[string]any{"name": w.Name, "version": w.Version})
	return storage.AuditEvent{OccurredAt: now.UTC(), WorkspaceID: actor.WorkspaceID, ActorID: actor.KeyID, EventType: typ,
		ResourceType: ResourceWorkflow, ResourceID: w.Name, Input: in}
}

// PutWorkflow creates or replaces a definition (created=true for a new
// one). The definition is checked fully first (ErrInvalidWorkflow names the
// step and field), and a key below admin may send requests only to
// destinations the callback secret's allowed_hosts approve (the queues'
// rule: every step request carries the workspace's signature).
func (s *Service) PutWorkflow(ctx context.Context, actor vault.Actor, name string, raw json.RawMessage) (storage.Workflow, bool, error) {
	if !ValidName(name) {
		return storage.Workflow{}, false, invalid("name must be lower-case letters, digits, '-' and '_' (at most 64, starting with a letter or digit)")
	}
	d, err := ParseDefinition(raw)
	if err != nil {
		return storage.Workflow{}, false, err
	}
	exists := func(ctx context.Context, secret string) (bool, error) {
		_, err := s.vault.GetSecret(ctx, vault.Actor{WorkspaceID: actor.WorkspaceID}, secret)
		if errors.Is(err, vault.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	if err := Validate(ctx, d, exists); err != nil {
		return storage.Workflow{}, false, err
	}
	p, _ := compile(d)
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return storage.Workflow{}, false, invalid("%v", err)
	}
	for range 8 {
		now := s.now().UTC()
		cur, err := s.store.GetWorkflow(ctx, actor.WorkspaceID, name)
		found := err == nil
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return storage.Workflow{}, false, err
		}
		if err := s.checkDestinations(ctx, actor, p, cur, found); err != nil {
			return storage.Workflow{}, false, err
		}
		w := storage.Workflow{WorkspaceID: actor.WorkspaceID, Name: name, Definition: compact.Bytes(), CreatedAt: now, UpdatedAt: now}
		typ := EventWorkflowCreated
		if found {
			w.CreatedAt, typ = cur.CreatedAt, EventWorkflowUpdated
		}
		w.Version = cur.Version + 1
		err = s.store.PutWorkflow(ctx, storage.PutWorkflowArgs{Workflow: w, ExpectedVersion: cur.Version,
			Audit: s.signed(workflowAudit(actor, typ, w, now))})
		if errors.Is(err, storage.ErrConflict) || errors.Is(err, storage.ErrExists) || errors.Is(err, storage.ErrNotFound) {
			continue
		}
		return w, !found, err
	}
	return storage.Workflow{}, false, vault.ErrBusy
}

// checkDestinations applies the callback credentials rule to each request
// step: below admin, a destination must be approved, or already used by
// the version being replaced.
func (s *Service) checkDestinations(ctx context.Context, actor vault.Actor, p *plan, cur storage.Workflow, found bool) error {
	if actor.Can(vault.RoleAdmin) {
		return nil
	}
	var prev []*url.URL
	if found {
		if d, err := ParseDefinition(cur.Definition); err == nil {
			if pp, err := compile(d); err == nil {
				prev = pp.requestDestinations()
			}
		}
	}
	for _, dest := range p.requestDestinations() {
		known := false
		for _, u := range prev {
			if sameDestination(u, dest) {
				known = true
			}
		}
		if known {
			continue
		}
		ok, err := s.vault.CallbackDestinationApproved(ctx, actor.WorkspaceID, dest)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: %q is not in the callback secret's allowed_hosts, and only an admin may send the workspace's signed requests to a new host; an admin must approve the host (PATCH /v1/workspace/callback-secret) or apply this workflow",
				vault.ErrForbidden, truncate(dest.Host, 100))
		}
	}
	return nil
}

func sameDestination(a, b *url.URL) bool {
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		if strings.EqualFold(u.Scheme, "https") {
			return "443"
		}
		return "80"
	}
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(strings.TrimSuffix(a.Hostname(), "."), strings.TrimSuffix(b.Hostname(), ".")) && port(a) == port(b)
}

func (s *Service) GetWorkflow(ctx context.Context, actor vault.Actor, name string) (storage.Workflow, error) {
	w, err := s.store.GetWorkflow(ctx, actor.WorkspaceID, name)
	return w, notFound(err, fmt.Sprintf("workflow %q", name))
}

func (s *Service) ListWorkflows(ctx context.Context, actor vault.Actor) ([]storage.Workflow, error) {
	return s.store.ListWorkflows(ctx, actor.WorkspaceID)
}

// DeleteWorkflow deletes a definition; its open runs are canceled.
func (s *Service) DeleteWorkflow(ctx context.Context, actor vault.Actor, name string) error {
	now := s.now().UTC()
	err := s.store.DeleteWorkflow(ctx, storage.DeleteWorkflowArgs{WorkspaceID: actor.WorkspaceID, Name: name, At: now,
		Audit: s.signed(workflowAudit(actor, EventWorkflowDeleted, storage.Workflow{Name: name}, now))})
	return notFound(err, fmt.Sprintf("workflow %q", name))
}

// StartRunRequest is what POST /v1/workflows/{name}/runs carries.
type StartRunRequest struct {
	Input          json.RawMessage
	IdempotencyKey string
}

func invalidRun(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidRun, fmt.Sprintf(format, args...))
}

// StartRun starts a run of the workflow's current version; an idempotency
// key used for the same workflow in the last 24 hours returns that run
// (existing=true).
func (s *Service) StartRun(ctx context.Context, actor vault.Actor, name string, req StartRunRequest) (storage.WorkflowRun, bool, error) {
	in := bytes.TrimSpace(req.Input)
	if len(in) == 0 || string(in) == "null" {
		in = []byte("{}")
	}
	if len(in) > MaxInputBytes {
		return storage.WorkflowRun{}, false, invalidRun("input is larger than %d bytes", MaxInputBytes)
	}
	if in[0] != '{' || !json.Valid(in) {
		return storage.WorkflowRun{}, false, invalidRun("input must be a JSON object")
	}
	if len(req.IdempotencyKey) > MaxIdempotencyKey {
		return storage.WorkflowRun{}, false, invalidRun("idempotency_key is longer than %d bytes", MaxIdempotencyKey)
	}
	w, err := s.store.GetWorkflow(ctx, actor.WorkspaceID, name)
	if err != nil {
		return storage.WorkflowRun{}, false, notFound(err, fmt.Sprintf("workflow %q", name))
	}
	d, err := ParseDefinition(w.Definition)
	if err != nil {
		return storage.WorkflowRun{}, false, err
	}
	now := s.now().UTC()
	r := storage.WorkflowRun{ID: NewRunID(now), WorkspaceID: actor.WorkspaceID, Workflow: name, Version: w.Version, Definition: w.Definition,
		Input: in, IdempotencyKey: req.IdempotencyKey, Status: storage.RunRunning, WakeAt: now, StartedBy: actor.KeyID, CreatedAt: now, UpdatedAt: now}
	for i, st := range d.Steps {
		ss := storage.StepState{ID: st.ID, Status: storage.StepPending}
		if i == 0 {
			ss.Status = storage.StepRunning
		}
		r.Steps = append(r.Steps, ss)
	}
	got, existing, err := s.store.CreateRun(ctx, storage.CreateRunArgs{Run: r, Now: now,
		Audit: s.signed(runAudit(actor.KeyID, EventRunStarted, r, now, map[string]any{"idempotency_key": req.IdempotencyKey}, nil))})
	if err != nil {
		return storage.WorkflowRun{}, false, notFound(err, fmt.Sprintf("workflow %q", name))
	}
	if !existing {
		s.m.started.Inc()
		s.notify()
	}
	return got, existing, nil
}

func (s *Service) GetRun(ctx context.Context, actor vault.Actor, id string) (storage.WorkflowRun, error) {
	r, err := s.store.GetRun(ctx, actor.WorkspaceID, id)
	return r, notFound(err, fmt.Sprintf("run %q", id))
}

// ListRuns lists the workspace's runs (of one workflow when q.Workflow is
// set), newest first.
func (s *Service) ListRuns(ctx context.Context, actor vault.Actor, q storage.RunQuery) (storage.RunPage, error) {
	q.WorkspaceID = actor.WorkspaceID
	switch q.Status {
	case "", storage.RunRunning, storage.RunWaiting, storage.RunCompleted, storage.RunFailed, storage.RunCanceled:
	default:
		return storage.RunPage{}, invalidRun("status must be running, waiting, completed, failed or canceled")
	}
	if q.Workflow != "" {
		if _, err := s.store.GetWorkflow(ctx, actor.WorkspaceID, q.Workflow); err != nil {
			return storage.RunPage{}, notFound(err, fmt.Sprintf("workflow %q", q.Workflow))
		}
	}
	return s.store.ListRuns(ctx, q)
}

func stateErr(err error, id string) error {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("%w: run %q does not exist", vault.ErrNotFound, id)
	case errors.Is(err, storage.ErrConflict):
		return fmt.Errorf("%w: %v", ErrRunState, err)
	}
	return err
}

// Signal sends a signal to a run; one sent before the run reaches its wait
// is kept for it.
func (s *Service) Signal(ctx context.Context, actor vault.Actor, id, name string, data json.RawMessage) (storage.WorkflowRun, error) {
	if !stepIDRE.MatchString(name) {
		return storage.WorkflowRun{}, invalidRun("signal name must be letters, digits, '_' and '-' (at most 64)")
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	if len(data) > MaxSignalBytes {
		return storage.WorkflowRun{}, invalidRun("data is larger than %d bytes", MaxSignalBytes)
	}
	if !json.Valid(data) {
		return storage.WorkflowRun{}, invalidRun("data must be JSON")
	}
	now := s.now().UTC()
	cur, err := s.store.GetRun(ctx, actor.WorkspaceID, id)
	if err != nil {
		return storage.WorkflowRun{}, stateErr(err, id)
	}
	r, err := s.store.SignalRun(ctx, storage.SignalRunArgs{WorkspaceID: actor.WorkspaceID, RunID: id, Now: now,
		Signal: storage.RunSignal{Name: name, Data: data, SentBy: actor.KeyID},
		Audit:  s.signed(runAudit(actor.KeyID, EventRunSignaled, cur, now, map[string]any{"signal": name}, nil))})
	if err != nil {
		return storage.WorkflowRun{}, stateErr(err, id)
	}
	s.notify()
	return r, nil
}

func (s *Service) Cancel(ctx context.Context, actor vault.Actor, id string) (storage.WorkflowRun, error) {
	now := s.now().UTC()
	cur, err := s.store.GetRun(ctx, actor.WorkspaceID, id)
	if err != nil {
		return storage.WorkflowRun{}, stateErr(err, id)
	}
	r, err := s.store.CancelRun(ctx, storage.CancelRunArgs{WorkspaceID: actor.WorkspaceID, RunID: id, At: now,
		Audit: s.signed(runAudit(actor.KeyID, EventRunCanceled, cur, now, nil, nil))})
	return r, stateErr(err, id)
}

// Retry resumes a failed run at its failed step.
func (s *Service) Retry(ctx context.Context, actor vault.Actor, id string) (storage.WorkflowRun, error) {
	now := s.now().UTC()
	cur, err := s.store.GetRun(ctx, actor.WorkspaceID, id)
	if err != nil {
		return storage.WorkflowRun{}, stateErr(err, id)
	}
	r, err := s.store.RetryRun(ctx, storage.RetryRunArgs{WorkspaceID: actor.WorkspaceID, RunID: id, At: now,
		Audit: s.signed(runAudit(actor.KeyID, EventRunRetried, cur, now, nil, nil))})
	if err != nil {
		return storage.WorkflowRun{}, stateErr(err, id)
	}
	s.notify()
	return r, nil
}
