package storage

import "errors"

// Sentinel errors returned by every Store. Backends wrap them with %w so that
// callers can test with errors.Is while keeping backend detail in the message.
var (
	// ErrNotFound: the record asked for does not exist (or is in another workspace).
	ErrNotFound = errors.New("not found")
	// ErrExists: a create collided with an existing record of the same identity.
	ErrExists = errors.New("already exists")
	// ErrConflict: a compare-and-swap write found the record changed since it was read.
	ErrConflict = errors.New("conflict: record changed concurrently")
	// ErrInUse: the record is still referenced and cannot be removed.
	ErrInUse = errors.New("still in use")
	// ErrUnavailable: the backend cannot serve requests right now (closed, locked, down).
	ErrUnavailable = errors.New("storage unavailable")
)
