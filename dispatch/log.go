package dispatch

// One summary log line per delivery attempt (message LogMsgAttempt), with
// these field names; a test checks them.
const (
	LogMsgAttempt      = "dispatch attempt"
	LogFieldJobID      = "job_id"
	LogFieldQueue      = "queue"
	LogFieldWorkspace  = "workspace_id"
	LogFieldAttempt    = "attempt"
	LogFieldStatus     = "status"
	LogFieldDurationMS = "duration_ms"
	LogFieldOutcome    = "outcome"
	LogFieldErrorCode  = "error_code"
	LogFieldNextRunAt  = "next_run_at"
)

// Attempt outcomes (log field and metric label).
const (
	OutcomeDelivered = "delivered"
	OutcomeRetry     = "retry"
	OutcomeDead      = "dead"
)

// Attempt error codes.
const (
	ErrCodeSecretMissing    = "secret_missing"
	ErrCodeTimeout          = "timeout"
	ErrCodeConnectionFailed = "connection_failed"
	ErrCodeHTTPStatus       = "http_status"
	ErrCodeGone             = "gone"
	// ErrCodeActorRevoked: the API key that enqueued the job was revoked
	// (or is gone, or of another workspace): nothing was sent and the job
	// is dead. The workflow engine's code for the same refusal.
	ErrCodeActorRevoked = "actor_revoked"
)

// The audit row of a job refused before sending (ErrCodeActorRevoked): its
// actor is the revoked key, its output {"reason": "actor_revoked"}, its
// input the callback's host, the queue and the attempt.
const (
	EventJobRefused = "job.refused"
	ResourceJob     = "job"
)
