package api

import (
	"context"
	"errors"
	"net/http"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
	"rotor.sh/rotor/workflow"
)

// Error codes of the API, the "code" of an error body.
const (
	CodeInvalidJSON           = "invalid_json"
	CodeUnknownField          = "unknown_field"
	CodeInvalidType           = "invalid_type"
	CodeBodyTooLarge          = "body_too_large"
	CodeUnsupportedMedia      = "unsupported_media_type"
	CodeInvalidName           = "invalid_name"
	CodeInvalidValue          = "invalid_value"
	CodeInvalidAllowedHosts   = "invalid_allowed_hosts"
	CodeInvalidArgument       = "invalid_argument"
	CodeInvalidQuery          = "invalid_query"
	CodeUnauthorized          = "unauthorized"
	CodeForbidden             = "forbidden"
	CodeHostNotAllowed        = "host_not_allowed"
	CodeNotFound              = "not_found"
	CodeMethodNotAllowed      = "method_not_allowed"
	CodeAlreadyExists         = "already_exists"
	CodeConcurrentUpdate      = "concurrent_update"
	CodeUnavailable           = "unavailable"
	CodeAuditUnavailable      = "audit_unavailable"
	CodeDecryptFailed         = "decrypt_failed"
	CodeInternal              = "internal"
	CodeInvalidQueue          = "invalid_queue"
	CodeMissingSecrets        = "missing_secrets"
	CodeInvalidJob            = "invalid_job"
	CodeJobState              = "job_state"
	CodeSecretInUse           = "secret_in_use"
	CodeConflict              = "conflict"
	CodeInvalidWorkflow       = "invalid_workflow"
	CodeInvalidRun            = "invalid_run"
	CodeRunState              = "run_state"
	CodeClientClosedRequest   = "client_closed_request"
	statusClientClosedRequest = 499
)

// HeaderError carries the code of an error that both the API and the proxy
// answer (audit_unavailable), so one client check covers both.
const HeaderError = "X-Rotor-Error"

// requestError is a client mistake found by the API layer itself (decoding,
// query parsing), already carrying its status and code.
type requestError struct {
	status  int
	code    string
	message string
}

func (e *requestError) Error() string { return e.message }

func badRequest(code, msg string) error {
	return &requestError{status: http.StatusBadRequest, code: code, message: msg}
}

// classify is the one place an error becomes an HTTP status and code. The
// message is shown to the client only for client errors; server errors say
// "internal error" and are logged instead.
func classify(err error) (status int, code, message string) {
	var re *requestError
	switch {
	case errors.As(err, &re):
		return re.status, re.code, re.message
	case errors.Is(err, dispatch.ErrInvalidQueue):
		return http.StatusUnprocessableEntity, CodeInvalidQueue, err.Error()
	case errors.Is(err, dispatch.ErrMissingSecrets):
		return http.StatusUnprocessableEntity, CodeMissingSecrets, err.Error()
	case errors.Is(err, dispatch.ErrInvalidJob):
		return http.StatusUnprocessableEntity, CodeInvalidJob, err.Error()
	case errors.Is(err, dispatch.ErrJobState):
		return http.StatusConflict, CodeJobState, err.Error()
	case errors.Is(err, workflow.ErrInvalidWorkflow):
		return http.StatusUnprocessableEntity, CodeInvalidWorkflow, err.Error()
	case errors.Is(err, workflow.ErrInvalidRun):
		return http.StatusUnprocessableEntity, CodeInvalidRun, err.Error()
	case errors.Is(err, workflow.ErrRunState):
		return http.StatusConflict, CodeRunState, err.Error()
	case errors.Is(err, dispatch.ErrSecretInUse):
		return http.StatusConflict, CodeSecretInUse, err.Error()
	case errors.Is(err, vault.ErrInvalidName):
		return http.StatusUnprocessableEntity, CodeInvalidName, err.Error()
	case errors.Is(err, vault.ErrInvalidValue):
		return http.StatusUnprocessableEntity, CodeInvalidValue, err.Error()
	case errors.Is(err, vault.ErrInvalidHost):
		return http.StatusUnprocessableEntity, CodeInvalidAllowedHosts, err.Error()
	case errors.Is(err, vault.ErrInvalidArgument):
		return http.StatusUnprocessableEntity, CodeInvalidArgument, err.Error()
	case errors.Is(err, vault.ErrUnauthenticated):
		return http.StatusUnauthorized, CodeUnauthorized, err.Error()
	case errors.Is(err, vault.ErrForbidden):
		return http.StatusForbidden, CodeForbidden, err.Error()
	case errors.Is(err, vault.ErrHostNotAllowed):
		return http.StatusForbidden, CodeHostNotAllowed, err.Error()
	case errors.Is(err, vault.ErrNotFound):
		return http.StatusNotFound, CodeNotFound, err.Error()
	case errors.Is(err, vault.ErrExists):
		return http.StatusConflict, CodeAlreadyExists, err.Error()
	case errors.Is(err, vault.ErrConflict):
		return http.StatusConflict, CodeConflict, err.Error()
	case errors.Is(err, vault.ErrBusy):
		return http.StatusConflict, CodeConcurrentUpdate, err.Error()
	case errors.Is(err, vault.ErrAuditUnavailable):
		return http.StatusServiceUnavailable, CodeAuditUnavailable, "the audit trail cannot take the access row this request needs; retry shortly"
	case errors.Is(err, storage.ErrUnavailable), errors.Is(err, vault.ErrClosed):
		return http.StatusServiceUnavailable, CodeUnavailable, "storage is unavailable, retry shortly"
	case errors.Is(err, context.Canceled):
		return statusClientClosedRequest, CodeClientClosedRequest, "client closed the request"
	case errors.Is(err, vault.ErrDecrypt):
		return http.StatusInternalServerError, CodeDecryptFailed, "a stored value failed to decrypt; see the server log"
	default:
		return http.StatusInternalServerError, CodeInternal, "internal error"
	}
}
