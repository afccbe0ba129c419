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
)
