package api

// Field names of the one summary log line written per API request
// (message LogMsgRequest). They are part of Rotor's operational contract:
// dashboards and alerts parse them, and a test checks them.
const (
	LogMsgRequest      = "api request"
	LogFieldRequestID  = "request_id"
	LogFieldMethod     = "method"
	LogFieldRoute      = "route"
	LogFieldPath       = "path"
	LogFieldStatus     = "status"
	LogFieldDurationMS = "duration_ms"
	LogFieldBytesOut   = "bytes_out"
	LogFieldActorID    = "actor_id"
	LogFieldWorkspace  = "workspace_id"
	LogFieldErrorCode  = "error_code"
	LogFieldRemote     = "remote_addr"
)
