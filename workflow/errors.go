package workflow

import "errors"

// Sentinel errors, mapped to HTTP statuses by package api.
var (
	// ErrInvalidWorkflow: a definition is malformed (a step, a field, an
	// expression, a duration, an unknown secret). The message names the
	// step and field.
	ErrInvalidWorkflow = errors.New("invalid workflow")
	// ErrInvalidRun: a run request is malformed (input, idempotency key,
	// signal).
	ErrInvalidRun = errors.New("invalid run")
	// ErrRunState: the run's status does not allow the operation (signal
	// a finished run, retry one that has not failed).
	ErrRunState = errors.New("run state does not allow this")
)

// ErrNoActors: an Engine needs Options.Actors to check each run's
// starting key before a step acts for it (a configuration error, not a
// status).
var ErrNoActors = errors.New("workflow engine needs a starting-key check (Options.Actors)")

// Errors of the engine's own, reported as step error codes, not statuses.
var (
	// errExpr marks a failure to evaluate an expression at run time.
	errExpr = errors.New("expression failed")
	// errInjected: substituted data would add a secret reference.
	errInjected = errors.New("substituted data holds a secret reference")
)
