//go:build linux

package memlock

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// DisableCoreDumps sets RLIMIT_CORE to 0 (soft and hard, so the process
// cannot raise it again) and marks the process not dumpable, which also
// stops other processes of the same user from attaching with ptrace or
// reading /proc/<pid>/mem.
func DisableCoreDumps() error {
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0}); err != nil {
		return fmt.Errorf("setrlimit RLIMIT_CORE: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl PR_SET_DUMPABLE: %w", err)
	}
	return nil
}

// Lock keeps b's pages in RAM (mlock). Go's heap does not move objects, so
// the lock holds for b's lifetime. It fails past RLIMIT_MEMLOCK or without
// the privilege; callers log that and go on.
func Lock(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return unix.Mlock(b)
}

// coreLimit and dumpable report the current state, for tests.
func coreLimit() (cur, max uint64, err error) {
	var r unix.Rlimit
	err = unix.Getrlimit(unix.RLIMIT_CORE, &r)
	return r.Cur, r.Max, err
}

func dumpable() (bool, error) {
	n, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	return n != 0, err
}
