package plugins

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// cpuSampler returns the load gate's look at the machine and at this
// process and peer, or nil (the gate never opens) when the peer is unknown
// or this process's CPUs cannot be read.
func cpuSampler(peer int) func() (cpuSample, bool) {
	if peer <= 0 {
		return nil
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil
	}
	pids := []string{"/proc/self/stat"}
	if peer != os.Getpid() { // a test talking to itself
		pids = append(pids, "/proc/"+strconv.Itoa(peer)+"/stat")
	}
	return func() (cpuSample, bool) {
		b, err := os.ReadFile("/proc/stat")
		if err != nil {
			return cpuSample{}, false
		}
		s, ok := parseProcStat(b, set.IsSet)
		for _, p := range pids {
			b, err := os.ReadFile(p)
			if err != nil {
				return cpuSample{}, false // the peer is gone
			}
			t, ok2 := parsePidStat(b)
			s.pair += t
			ok = ok && ok2
		}
		return s, ok
	}
}
