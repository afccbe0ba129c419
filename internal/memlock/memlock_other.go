//go:build !linux

package memlock

import "errors"

// DisableCoreDumps is not implemented on this platform.
func DisableCoreDumps() error { return errors.ErrUnsupported }

// Lock is not implemented on this platform.
func Lock(b []byte) error { return errors.ErrUnsupported }
