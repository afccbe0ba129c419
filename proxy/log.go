package proxy

// The one summary log line per proxied request (message LogMsgRequest) uses
// these field names; a test checks them. Values never appear: secrets are
// listed by name.
const (
	LogMsgRequest      = "proxy request"
	LogFieldRequestID  = "request_id"
	LogFieldMethod     = "method"
	LogFieldHost       = "host"
	LogFieldStatus     = "status"
	LogFieldDurationMS = "duration_ms"
	LogFieldOutcome    = "outcome"
	LogFieldSecrets    = "secrets"
	LogFieldActorID    = "actor_id"
	LogFieldWorkspace  = "workspace_id"
	LogFieldErrorCode  = "error_code"
	LogFieldBytesOut   = "bytes_out"
	LogFieldTLS        = "mitm"
	LogFieldScrubbed   = "scrubbed"
)

// Outcomes (the "outcome" log field and metric label).
const (
	OutcomeForwarded = "forwarded" // sent upstream, response relayed
	OutcomeResolved  = "resolved"  // forwarded with at least one secret resolved
	OutcomeRefused   = "refused"   // answered by the proxy (auth, reference, policy)
	OutcomeFailed    = "failed"    // upstream error
	OutcomeTunneled  = "tunneled"  // CONNECT passed through untouched (no CA)
)
