package storage

import (
	"context"
	"encoding/json"
	"time"
)

// Workflow run statuses. Running and waiting runs are open; the other three
// are final (prunable).
const (
	RunRunning   = "running"   // a step is due or executing
	RunWaiting   = "waiting"   // sleeping, or waiting for a signal: no lease, no worker
	RunCompleted = "completed" // every step completed
	RunFailed    = "failed"    // a step exhausted its attempts (retry resumes it)
	RunCanceled  = "canceled"  // canceled by hand, or its workflow was deleted
)

// Step statuses inside a run.
const (
	StepPending   = "pending"   // not reached yet
	StepRunning   = "running"   // due or executing (a retry is pending too)
	StepSleeping  = "sleeping"  // a sleep step until the run's WakeAt
	StepWaiting   = "waiting"   // waiting for a signal (until WakeAt when it has a timeout)
	StepCompleted = "completed" // done: checkpointed, never run again
	StepFailed    = "failed"    // attempts exhausted, or timed out
	StepCanceled  = "canceled"  // the run was canceled at this step
)

// ChangeWorkflowRuns: runs were started, signaled or retried (wakes the
// engines of other nodes instead of waiting for their next poll).
const ChangeWorkflowRuns = "workflow_runs"

// MaxRunSignals bounds the signals one run keeps; SignalRun answers
// ErrConflict beyond it.
const MaxRunSignals = 64

// Workflow is a workflow definition at its current version. Definition is
// the validated definition JSON (`{"steps": [...]}`) as the user wrote it:
// it holds templates (secret references), never resolved values. The store
// treats it as opaque; package workflow owns its schema.
type Workflow struct {
	WorkspaceID string          `json:"workspace_id"`
	Name        string          `json:"name"`
	Version     int64           `json:"version"`
	Definition  json.RawMessage `json:"definition"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
}

// StepState is one step of a run as executed so far.
type StepState struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	// Attempts are the step's request attempts (a request step) or its one
	// wait (sleep and wait_for_signal steps record none).
	Attempts []Attempt `json:"attempts,omitempty"`
	// RetryFrom is len(Attempts) when the run was last retried by hand: the
	// step's attempt budget counts from there.
	RetryFrom int `json:"retry_from,omitempty"`
	// Output is the step's result as data: the scrubbed, capped response
	// body of a request step (JSON when it was JSON, else a JSON string), or
	// the data of the signal a wait step received. Never a resolved secret.
	Output json.RawMessage `json:"output,omitempty"`
	// OutputTruncated: the body was larger than the cap and was cut.
	OutputTruncated bool `json:"output_truncated,omitempty"`
	// ErrorCode says why the step failed (timeout, http_status,
	// secret_missing, ...).
	ErrorCode  string    `json:"error_code,omitempty"`
	StartedAt  time.Time `json:"started_at,omitempty"`
	FinishedAt time.Time `json:"finished_at,omitempty"`
}

// RunSignal is a signal sent to a run. Signals sent before the run reaches
// its wait are kept; a wait takes the first unused signal of its name.
type RunSignal struct {
	Name       string          `json:"name"`
	Data       json.RawMessage `json:"data,omitempty"`
	SentBy     string          `json:"sent_by"`
	ReceivedAt time.Time       `json:"received_at"`
	// UsedBy is the id of the wait step that took the signal ("" while
	// unused).
	UsedBy string `json:"used_by,omitempty"`
}

// WorkflowRun is one execution of a workflow at the Version it started
// with. Definition is a copy of that version's definition, so a run never
// depends on a later PUT or a DELETE of its workflow.
type WorkflowRun struct {
	ID             string          `json:"id"`
	WorkspaceID    string          `json:"workspace_id"`
	Workflow       string          `json:"workflow"`
	Version        int64           `json:"version"`
	Definition     json.RawMessage `json:"definition"`
	Input          json.RawMessage `json:"input,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	Status         string          `json:"status"`
	// Step is the index of the step that has not completed yet (len(Steps)
	// once every step completed).
	Step  int         `json:"step"`
	Steps []StepState `json:"steps"`
	// Signals are kept in arrival order; the store appends them (SignalRun)
	// and a checkpoint only changes their UsedBy.
	Signals []RunSignal `json:"signals,omitempty"`
	// WakeAt is when the run is next due: now for a running run, a retry's
	// backoff, a sleep's end, a wait's timeout. Zero for a wait without a
	// timeout (only a signal makes it due) and for finished runs.
	WakeAt time.Time `json:"wake_at,omitempty"`
	// WaitingFor is the signal name the current wait step waits for: a
	// signal of that name makes the run due at once.
	WaitingFor string `json:"waiting_for,omitempty"`
	// LeaseOwner and LeaseUntil: the engine executing the run. Sleeping and
	// waiting runs hold no lease.
	LeaseOwner string    `json:"lease_owner,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitempty"`
	// LeaseToken fences a lease: every lease, cancel and retry increases it,
	// and a checkpoint carrying an older token is refused.
	LeaseToken uint64 `json:"lease_token,omitempty"`
	Leases     int    `json:"leases,omitempty"`
	// ErrorCode says why a failed run failed (the failed step's code).
	ErrorCode string `json:"error_code,omitempty"`
	// StartedBy is the API key that started the run: the actor of the audit
	// rows its steps cause (secret.accessed included).
	StartedBy  string    `json:"started_by"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	FinishedAt time.Time `json:"finished_at,omitempty"`
}

// RunFinished reports whether a run status is final (prunable).
func RunFinished(status string) bool {
	return status == RunCompleted || status == RunFailed || status == RunCanceled
}

// WorkflowStore is the workflow part of a Store: definitions and runs.
// Every method takes a context first; writes carrying Audit events commit
// them in the same transaction as the change.
type WorkflowStore interface {
	// PutWorkflow creates (ExpectedVersion 0: ErrExists if the name is
	// taken) or replaces (ErrConflict unless the stored Version equals
	// ExpectedVersion; ErrNotFound if it is gone) a definition, storing it
	// with Version = ExpectedVersion+1. Runs keep the version they started
	// with.
	PutWorkflow(ctx context.Context, args PutWorkflowArgs) error
	GetWorkflow(ctx context.Context, workspaceID, name string) (Workflow, error)
	// ListWorkflows returns a workspace's definitions by name.
	ListWorkflows(ctx context.Context, workspaceID string) ([]Workflow, error)
	// DeleteWorkflow removes a definition; its open runs become canceled
	// (as a deleted queue's undelivered jobs do). ErrNotFound if absent.
	DeleteWorkflow(ctx context.Context, args DeleteWorkflowArgs) error

	// CreateRun stores a new run. A run whose idempotency key was used for
	// the same workflow within IdempotencyWindow is not stored again: the
	// existing run is returned with existing=true and Audit is not written.
	// ErrNotFound if the workflow does not exist.
	CreateRun(ctx context.Context, args CreateRunArgs) (run WorkflowRun, existing bool, err error)
	GetRun(ctx context.Context, workspaceID, id string) (WorkflowRun, error)
	// ListRuns returns runs newest first.
	ListRuns(ctx context.Context, q RunQuery) (RunPage, error)
	// LeaseRuns leases up to Limit due runs to Owner: open runs with WakeAt
	// set and <= Now whose lease is absent or expired. Workspaces, then each
	// workspace's workflows, take turns (Fair); within one, earliest WakeAt
	// first. It reads only due runs: waiting runs cost nothing.
	LeaseRuns(ctx context.Context, args LeaseRunsArgs) ([]WorkflowRun, error)
	// CheckpointRun stores the state a lease holder computed (Status, Step,
	// Steps, WakeAt, WaitingFor, ErrorCode, FinishedAt and the UsedBy of
	// Signals), atomically with the lease check: ErrConflict when the stored
	// LeaseToken differs from args.Run.LeaseToken (the lease expired and was
	// taken again, or the run was canceled or retried), and nothing is
	// written. It keeps the lease until LeaseUntil, or drops it (Release; a
	// finished run always drops it). Signals appended since the lease are
	// kept. Returns the run as stored.
	CheckpointRun(ctx context.Context, args CheckpointRunArgs) (WorkflowRun, error)
	// SignalRun appends a signal to an open run and, when the run waits for
	// that name, makes it due at Now. ErrConflict if the run is finished or
	// holds MaxRunSignals signals.
	SignalRun(ctx context.Context, args SignalRunArgs) (WorkflowRun, error)
	// CancelRun cancels an open run (ErrConflict otherwise), dropping its
	// lease and fencing its holder out.
	CancelRun(ctx context.Context, args CancelRunArgs) (WorkflowRun, error)
	// RetryRun resumes a failed run at its failed step (ErrConflict if the
	// run is not failed): the step becomes running with a fresh attempt
	// budget (RetryFrom), and the run is due at At.
	RetryRun(ctx context.Context, args RetryRunArgs) (WorkflowRun, error)
	// CountRuns counts runs by status, for metrics.
	CountRuns(ctx context.Context) (map[string]int, error)
	// PruneRuns deletes up to Limit finished runs last updated before
	// Before, with their idempotency records, in one short transaction, and
	// returns how many it deleted: fewer than Limit means none are left. Run
	// ids are time-ordered, so a backend may stop scanning at the first run
	// created after Before.
	PruneRuns(ctx context.Context, args PruneRunsArgs) (int, error)
}

type PutWorkflowArgs struct {
	Workflow        Workflow     `json:"workflow"`
	ExpectedVersion int64        `json:"expected_version"`
	Audit           []AuditEvent `json:"audit,omitempty"`
}

type DeleteWorkflowArgs struct {
	WorkspaceID string       `json:"workspace_id"`
	Name        string       `json:"name"`
	At          time.Time    `json:"at"`
	Audit       []AuditEvent `json:"audit,omitempty"`
}

type CreateRunArgs struct {
	Run   WorkflowRun  `json:"run"`
	Now   time.Time    `json:"now"`
	Audit []AuditEvent `json:"audit,omitempty"`
}

// RunQuery filters a workspace's runs. Empty fields do not filter.
type RunQuery struct {
	WorkspaceID string `json:"workspace_id"`
	Workflow    string `json:"workflow,omitempty"`
	Status      string `json:"status,omitempty"`
	// Before is the cursor: runs with ID < Before ("" from the newest).
	Before string `json:"before,omitempty"`
	Limit  int    `json:"limit"`
}

type RunPage struct {
	Runs []WorkflowRun `json:"runs"`
	Next string        `json:"next,omitempty"`
}

type LeaseRunsArgs struct {
	Owner      string        `json:"owner"`
	Now        time.Time     `json:"now"`
	Limit      int           `json:"limit"`
	Visibility time.Duration `json:"visibility"`
	// WorkspaceSlots bounds leases per workspace when the workspace is
	// listed (the caller's per-workspace worker budget).
	WorkspaceSlots map[string]int `json:"workspace_slots,omitempty"`
}

type CheckpointRunArgs struct {
	// Run carries the new state and, in LeaseToken, the lease it was
	// computed under.
	Run        WorkflowRun `json:"run"`
	LeaseUntil time.Time   `json:"lease_until"`
	Release    bool        `json:"release,omitempty"`
	At         time.Time   `json:"at"`
	// Audit is written only when the checkpoint is.
	Audit []AuditEvent `json:"audit,omitempty"`
}

type SignalRunArgs struct {
	WorkspaceID string       `json:"workspace_id"`
	RunID       string       `json:"run_id"`
	Signal      RunSignal    `json:"signal"`
	Now         time.Time    `json:"now"`
	Audit       []AuditEvent `json:"audit,omitempty"`
}

type CancelRunArgs struct {
	WorkspaceID string       `json:"workspace_id"`
	RunID       string       `json:"run_id"`
	At          time.Time    `json:"at"`
	Audit       []AuditEvent `json:"audit,omitempty"`
}

type RetryRunArgs struct {
	WorkspaceID string       `json:"workspace_id"`
	RunID       string       `json:"run_id"`
	At          time.Time    `json:"at"`
	Audit       []AuditEvent `json:"audit,omitempty"`
}

type PruneRunsArgs struct {
	Before time.Time `json:"before"`
	Limit  int       `json:"limit"`
}
