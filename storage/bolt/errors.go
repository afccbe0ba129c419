package bolt

import "errors"

var (
	// errWritePanicked: a write's function panicked inside a shared
	// transaction; its caller gets this error (with the panic's value), the
	// others of its group are committed without it.
	errWritePanicked = errors.New("bolt: write panicked")
	// errTrySolo tells a write that failed inside a shared transaction to
	// run again alone; it never reaches a caller of the Store.
	errTrySolo = errors.New("bolt: run the write alone")
)
