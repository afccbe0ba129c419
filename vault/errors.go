package vault

import "errors"

// Sentinel errors. Callers test with errors.Is; package api maps each to an
// HTTP status in one place. Messages never contain a secret value.
var (
	// ErrInvalidName: a secret name does not match ^[A-Z][A-Z0-9_]*$ or is too long.
	ErrInvalidName = errors.New("invalid secret name")
	// ErrInvalidValue: a secret value is empty or too large.
	ErrInvalidValue = errors.New("invalid secret value")
	// ErrInvalidHost: an allowed_hosts entry is not a host name, IP or *.domain pattern.
	ErrInvalidHost = errors.New("invalid allowed host")
	// ErrInvalidArgument: any other malformed request field.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotFound: the secret (or key, workspace) does not exist in the caller's workspace.
	ErrNotFound = errors.New("not found")
	// ErrExists: a secret (or workspace) with that name already exists.
	ErrExists = errors.New("already exists")
	// ErrUnauthenticated: no API key, or one that is unknown, malformed or revoked.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden: the API key's role does not allow the operation.
	ErrForbidden = errors.New("forbidden")
	// ErrHostNotAllowed: a secret was asked for on behalf of a destination
	// outside its allowed_hosts.
	ErrHostNotAllowed = errors.New("secret not allowed for this host")
	// ErrDecrypt: a sealed value failed to authenticate or open: tampered,
	// moved, truncated, or sealed under a key this keyring does not hold.
	ErrDecrypt = errors.New("sealed value failed to open")
	// ErrMasterKey: the master key cannot open the keyring of this data.
	ErrMasterKey = errors.New("master key does not match this data")
	// ErrBusy: a write kept colliding with concurrent writes; retry.
	ErrBusy = errors.New("concurrent updates, try again")
	// ErrAuditTampered: the audit chain or its seal does not verify.
	ErrAuditTampered = errors.New("audit trail tampered with")
	// ErrConflict: the operation would leave the deployment in a state it
	// cannot recover from by itself (revoking the last operator key).
	ErrConflict = errors.New("conflict")
	// ErrAuditUnavailable: the access row a request needs cannot be queued
	// (the audit backlog is at its bound while storage is failing or slow),
	// so the request is refused rather than served without a row. Retry.
	ErrAuditUnavailable = errors.New("audit trail unavailable")
	// ErrActorRevoked: the API key work acts for (the key that enqueued a
	// job) is revoked, gone, or not of the work's workspace.
	ErrActorRevoked = errors.New("acting API key revoked")
	// ErrClosed: the vault has been closed.
	ErrClosed = errors.New("vault closed")
)
