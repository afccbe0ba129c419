//go:build !linux

package plugins

// cpuSampler: only Linux polls (rawsock_linux.go), so elsewhere the gate
// has nothing to look at and never opens.
func cpuSampler(int) func() (cpuSample, bool) { return nil }
