// Package proccpu reads another process's CPU time, for benchmarks and
// tests that charge a storage plugin or a `rotor serve` child its share of
// the work (Go's runtime only measures its own process).
package proccpu

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// ErrUnavailable: /proc cannot be read (not Linux, or the process is gone).
var ErrUnavailable = errors.New("proccpu: process CPU time not readable")

// tick is USER_HZ, 100 on every Linux architecture Go supports: /proc
// counts CPU time in ticks of 10 ms, so runs of a second or more keep the
// error near 1%.
const tick = 10 * time.Millisecond

// Of is process pid's user+system CPU time so far, from /proc/PID/stat.
func Of(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return parseStat(b)
}

// parseStat reads utime and stime from a stat line: the 14th and 15th
// fields, the 12th and 13th after the command name's ")" (the name may
// hold spaces and parentheses, so the last ")" ends it).
func parseStat(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: malformed stat line", ErrUnavailable)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: short stat line", ErrUnavailable)
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return time.Duration(ut+st) * tick, nil
}
