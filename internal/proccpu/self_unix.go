//go:build unix

package proccpu

import (
	"syscall"
	"time"
)

// Self is this process's user+system CPU time so far, at the kernel's
// precision (getrusage): cpu-ns/op in a benchmark is robust to a loaded
// machine where ns/op is not. It is 0 if getrusage fails, which it does
// not for RUSAGE_SELF.
func Self() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
