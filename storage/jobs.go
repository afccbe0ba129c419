package storage

import (
	"context"
	"encoding/json"
	"time"
)

// Job statuses.
const (
	JobQueued    = "queued"    // waiting for RunAt (first attempt or a retry)
	JobLeased    = "leased"    // held by a dispatcher until LeaseUntil
	JobDelivered = "delivered" // a 2xx answer was received
	JobDead      = "dead"      // attempts exhausted, or the callback answered 410
	JobCanceled  = "canceled"  // canceled before delivery
)

// Queue is a callback destination with its delivery policy. CallbackURL and
// CallbackHeaders hold templates (secret references), never plaintext.
type Queue struct {
	WorkspaceID     string            `json:"workspace_id"`
	Name            string            `json:"name"`
	CallbackURL     string            `json:"callback_url"`
	CallbackHeaders map[string]string `json:"callback_headers,omitempty"`
	MaxAttempts     int               `json:"max_attempts"`
	BackoffBase     time.Duration     `json:"backoff_base"`
	BackoffCap      time.Duration     `json:"backoff_cap"`
	Timeout         time.Duration     `json:"timeout"`
	Concurrency     int               `json:"concurrency"`
	// RatePerSecond limits attempts per second; 0 means no limit.
	RatePerSecond float64   `json:"rate_per_second,omitempty"`
	Revision      int64     `json:"revision"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// Attempt is one delivery attempt of a job.
type Attempt struct {
	N          int           `json:"n"`
	StartedAt  time.Time     `json:"started_at"`
	Duration   time.Duration `json:"duration"`
	StatusCode int           `json:"status_code,omitempty"`
	// ErrorCode is set when the attempt failed (secret_missing, timeout,
	// connection_failed, http_status, ...).
	ErrorCode string `json:"error_code,omitempty"`
	// The rest is for people reading an attempt (the dashboard, GET
	// /v1/jobs/{id}), bounded in size by the dispatcher. RequestURL and
	// RequestHeaders are the templates as sent (references, never values);
	// Error is the failure in words (DNS failure, refused, timeout, TLS);
	// ResponseHeaders and ResponseExcerpt are what the callback answered,
	// scrubbed of resolved values (by the proxy) and of credentials.
	RequestURL      string            `json:"request_url,omitempty"`
	RequestHeaders  map[string]string `json:"request_headers,omitempty"`
	Error           string            `json:"error,omitempty"`
	ResponseHeaders map[string]string `json:"response_headers,omitempty"`
	ResponseExcerpt string            `json:"response_excerpt,omitempty"`
}

// Job is one payload to deliver to its queue's callback. Payload holds the
// template JSON as enqueued, never resolved values.
type Job struct {
	ID             string          `json:"id"`
	WorkspaceID    string          `json:"workspace_id"`
	Queue          string          `json:"queue"`
	Payload        json.RawMessage `json:"payload"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	Status         string          `json:"status"`
	RunAt          time.Time       `json:"run_at"`
	LeaseUntil     time.Time       `json:"lease_until,omitempty"`
	// LeaseToken fences a lease: a result from an expired lease is ignored.
	LeaseToken uint64 `json:"lease_token,omitempty"`
	// Leases counts how often the job was leased; more leases than
	// attempts+1 means a lease expired (a dispatcher died mid-attempt).
	Leases   int       `json:"leases,omitempty"`
	Attempts []Attempt `json:"attempts,omitempty"`
	// RetryFrom is len(Attempts) when the job was last retried by hand: the
	// attempt budget counts from there.
	RetryFrom   int       `json:"retry_from,omitempty"`
	EnqueuedBy  string    `json:"enqueued_by"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	DeliveredAt time.Time `json:"delivered_at,omitempty"`
}

// JobStore is the queue and job part of Store.
type JobStore interface {
	// CreateQueue: ErrExists if the name is taken in the workspace.
	CreateQueue(ctx context.Context, args CreateQueueArgs) error
	// UpdateQueue replaces a queue if its Revision still equals
	// ExpectedRevision (ErrConflict otherwise).
	UpdateQueue(ctx context.Context, args UpdateQueueArgs) error
	GetQueue(ctx context.Context, workspaceID, name string) (Queue, error)
	ListQueues(ctx context.Context, workspaceID string) ([]Queue, error)
	// DeleteQueue removes a queue; its undelivered jobs become canceled.
	DeleteQueue(ctx context.Context, args DeleteQueueArgs) error

	// EnqueueJobs stores jobs. A job whose idempotency key was used in its
	// queue within IdempotencyWindow is not stored again: its result holds
	// the existing job and Existing=true. A call is all or nothing: on an
	// error none of its jobs is stored (the dispatch service relies on it
	// to resend a failed batch in parts). Results are in the order of Jobs.
	// Backends group concurrent calls into few transactions.
	EnqueueJobs(ctx context.Context, args EnqueueJobsArgs) ([]EnqueueResult, error)
	GetJob(ctx context.Context, workspaceID, id string) (Job, error)
	// ListJobs returns a queue's jobs newest first.
	ListJobs(ctx context.Context, q JobQuery) (JobPage, error)
	// LeaseJobs leases up to Limit due jobs (queued with RunAt <= Now, or
	// leased with an expired lease). Per queue it takes at most what the
	// queue can start now (see LeaseCap); workspaces, then each workspace's
	// queues, take turns (see Fair); within a queue, oldest due first. It
	// reads only the queues that have due jobs and, in each, only the jobs
	// it leases: a deep backlog in one queue costs the others nothing.
	LeaseJobs(ctx context.Context, args LeaseJobsArgs) ([]Job, error)
	// CompleteAttempts records attempt results in one transaction. A result
	// whose LeaseToken no longer matches (the lease expired and the job was
	// leased again, or it was canceled) is dropped. A Release result gives
	// the lease back without an attempt.
	CompleteAttempts(ctx context.Context, results []AttemptResult) error
	// CancelJob cancels a job that is not delivered, dead or canceled yet
	// (ErrConflict otherwise).
	CancelJob(ctx context.Context, workspaceID, id string, at time.Time) (Job, error)
	// RetryJobs makes dead (or canceled) jobs queued again, due at At: one
	// job by id, or every dead job of a queue when ID is empty.
	RetryJobs(ctx context.Context, args RetryJobsArgs) (int, error)
	// CountJobs counts jobs by status, for metrics.
	CountJobs(ctx context.Context) (map[string]int, error)
	// JobUsage is what a workspace's open (queued or leased) jobs hold, for
	// quotas and metrics.
	JobUsage(ctx context.Context, workspaceID string) (JobUsage, error)
	// QueueStats describes every queue with open jobs at Now, for metrics.
	// It reads every open job's index entry: meant for a scrape, not a hot
	// path.
	QueueStats(ctx context.Context, now time.Time) ([]QueueStat, error)
}

// QueueStat is one queue's open jobs at a moment.
type QueueStat struct {
	WorkspaceID string `json:"workspace_id"`
	Queue       string `json:"queue"`
	// Ready jobs are due (queued with RunAt passed, or leased with the lease
	// expired); OldestReady is the earliest of their due times (zero when
	// none is ready).
	Ready       int       `json:"ready"`
	OldestReady time.Time `json:"oldest_ready,omitempty"`
	// Running jobs are leased (an unexpired lease).
	Running int `json:"running"`
}

// JobUsage counts a workspace's open (queued or leased) jobs and the bytes
// of their payloads as enqueued.
type JobUsage struct {
	OpenJobs     int   `json:"open_jobs"`
	PayloadBytes int64 `json:"payload_bytes"`
}

// IdempotencyWindow is how long an idempotency key returns its first job.
const IdempotencyWindow = 24 * time.Hour

type CreateQueueArgs struct {
	Queue Queue
	Audit []AuditEvent
}

type UpdateQueueArgs struct {
	Queue            Queue
	ExpectedRevision int64
	Audit            []AuditEvent
}

type DeleteQueueArgs struct {
	WorkspaceID string
	Name        string
	At          time.Time
	Audit       []AuditEvent
}

type EnqueueJobsArgs struct {
	Jobs []Job
	Now  time.Time
}

type EnqueueResult struct {
	Job      Job
	Existing bool
}

type JobQuery struct {
	WorkspaceID string
	Queue       string
	Status      string
	// Before is the cursor: jobs with ID < Before ("" from the newest).
	Before string
	Limit  int
}

type JobPage struct {
	Jobs []Job
	Next string
}

type LeaseJobsArgs struct {
	Now        time.Time
	Limit      int
	Visibility time.Duration
	// Slots bounds leases per queue (key QueueKey(ws, name)): the caller's
	// free concurrency and rate budget. See LeaseCap for unlisted queues.
	Slots map[string]int
	// WorkspaceSlots bounds leases per workspace when the workspace is
	// listed (the caller's per-workspace worker budget).
	WorkspaceSlots map[string]int
}

// QueueKey identifies a queue across workspaces.
func QueueKey(workspaceID, name string) string { return workspaceID + "/" + name }

type AttemptResult struct {
	WorkspaceID string
	JobID       string
	LeaseToken  uint64
	Attempt     Attempt
	// Status is the job's next status: JobDelivered, JobDead or JobQueued
	// (a retry at RunAt).
	Status string
	RunAt  time.Time
	At     time.Time
	// Release gives the lease back without an attempt (the dispatcher could
	// not start the job after all): the job is queued again at RunAt (its
	// old RunAt when zero), Attempt and Status are ignored, and the lease is
	// not counted in Leases.
	Release bool
}

type RetryJobsArgs struct {
	WorkspaceID string
	Queue       string
	ID          string
	At          time.Time
}
