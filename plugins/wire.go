package plugins

import (
	"context"
	"errors"
	"time"

	"rotor.sh/rotor/storage"
)

// Error kinds on the wire, one per storage sentinel.
var errorKinds = []struct {
	kind string
	err  error
}{
	{"not_found", storage.ErrNotFound},
	{"exists", storage.ErrExists},
	{"conflict", storage.ErrConflict},
	{"in_use", storage.ErrInUse},
	{"unavailable", storage.ErrUnavailable},
	{"canceled", context.Canceled},
	{"deadline", context.DeadlineExceeded},
}

func errorKind(err error) string {
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return k.kind
		}
	}
	return "error"
}

// wireError rebuilds an error from the wire, keeping its sentinel.
type wireError struct {
	sentinel error
	msg      string
}

func (e *wireError) Error() string { return e.msg }
func (e *wireError) Unwrap() error { return e.sentinel }

func fromWire(kind, msg string) error {
	for _, k := range errorKinds {
		if k.kind == kind {
			return &wireError{sentinel: k.err, msg: msg}
		}
	}
	return errors.New(msg)
}

// Argument shapes for methods whose Go signature is not a single struct.
type (
	idArgs struct {
		ID string `json:"id"`
	}
	wsNameArgs struct {
		WorkspaceID string `json:"workspace_id"`
		Name        string `json:"name"`
	}
	kekListArgs struct {
		KEKID string `json:"kek_id"`
		Limit int    `json:"limit"`
	}
	wsIDArgs struct {
		WorkspaceID string `json:"workspace_id"`
		ID          string `json:"id"`
	}
	cancelArgs struct {
		WorkspaceID string    `json:"workspace_id"`
		ID          string    `json:"id"`
		At          time.Time `json:"at"`
	}
)
