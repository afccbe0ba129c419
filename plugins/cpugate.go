package plugins

import (
	"bytes"
	"strconv"
	"time"
)

// The load gate: poll only while OTHER work leaves the two pollers of a
// call a core each.
//
// Both ends of a fast-call connection poll, so a call that ping-pongs
// between host and plugin keeps about two cores busy by itself. A gate on
// the machine's load (the 1-minute load average, runnable threads) reads
// that as a busy machine and switches polling off exactly when it pays: it
// was closed by the benchmark's own two pollers. So the gate measures the
// CPU spent by everything but this process and its peer: over an interval
// it takes the busy time of the CPUs this process may run on (/proc/stat)
// and subtracts this process's and the peer's CPU time (/proc/<pid>/stat;
// each side learns the other's pid from the socket, SO_PEERCRED). Polling
// is on while that others' CPU is under cpus - 2 + gateSlack cores: a core
// for each poller, less a slack for the noise of tick-based accounting and
// for the machine's background (kernel threads, agents), which the stall
// and timeout back-off catch wait by wait. Polling cannot hold the gate
// open by starving a competitor: a CPU-bound thread beside the two
// pollers on two CPUs gets, from the kernel's fair share, two thirds of a
// core, far over the slack.
//
// The pair's own non-call work (the host's dispatch workers, say) counts
// as theirs, not others': a host busy with its own goroutines still polls,
// within the 50 µs window and the back-off, and the reader polls only
// while it expects a frame. bench/dispatchload measures that case.
//
// The count of runnable threads (the old gate's second test) is gone: one
// instant's count, held for a whole interval, includes the pollers
// themselves and is noise; the interval's CPU time is the average it
// tried to guess.
//
// The look is made from the waiting path, no goroutine: at most once per
// gateEvery, three small /proc reads (tens of µs, while the other side
// works on the call anyway). Where /proc cannot be read, or the peer is
// unknown, the gate stays closed: no polling.
const (
	// gateEvery is the interval over which others' CPU is averaged. The
	// kernel counts the machine's CPU time in ticks of 10 ms, sampled: on
	// two CPUs, 500 ms is 100 ticks, and the reading of others' CPU
	// scatters by about 0.1 core (measured with the pair polling: 0.15-0.2
	// core over 250 ms, too close to gateSlack).
	gateEvery = 500 * time.Millisecond
	// gateStale: a previous look older than this (an idle connection) no
	// longer says anything about now; the gate stays closed for one
	// interval and looks again.
	gateStale = 5 * time.Second
	// gateSlack is how much of the pollers' two cores others may use
	// (cores): on two CPUs, a background process running one tick in
	// four. At half a core, measured, polling cost more CPU per call than
	// parking (docs/benchmarks.md, "spin"): a competitor there half the
	// time takes the core of a poller or of the side that works.
	gateSlack = 0.25
)

// cpuSample is one look at the CPU time of the machine and of a fast-call
// connection's pair of processes, in clock ticks.
type cpuSample struct {
	busy, total int64 // the CPUs this process may run on: busy and all ticks
	cpus        int   // how many CPUs busy and total count
	pair        int64 // this process's and its peer's CPU time
}

// cpuGate caches, per spinner, whether others' work leaves the pair's
// pollers their cores. Like the spinner, it is used by one goroutine at
// a time.
type cpuGate struct {
	sample func() (cpuSample, bool) // nil: the gate never opens
	last   cpuSample
	at     time.Time // of the last look (zero: none yet)
	have   bool      // last is a good sample
	open   bool
	// For tests and benchmarks: others' CPU (cores) over the last
	// interval, and how many intervals opened and closed the gate.
	others          float64
	opened, closedN uint64
}

func newCPUGate(sample func() (cpuSample, bool)) *cpuGate {
	return &cpuGate{sample: sample}
}

// quiet reports whether the pair may poll at now, looking again at most
// once per gateEvery.
func (g *cpuGate) quiet(now time.Time) bool {
	if g.sample == nil {
		return false
	}
	if !g.at.IsZero() && now.Sub(g.at) < gateEvery {
		return g.open
	}
	cur, ok := g.sample()
	fresh := g.have && !g.at.IsZero() && now.Sub(g.at) <= gateStale
	g.open = false
	if ok && fresh {
		g.others, g.open = othersIdle(g.last, cur)
		if g.open {
			g.opened++
		} else {
			g.closedN++
		}
	}
	g.last, g.have, g.at = cur, ok, now
	return g.open
}

// othersIdle returns the CPU (cores) that others than the pair used
// between two samples, and whether that leaves each poller a core.
func othersIdle(prev, cur cpuSample) (others float64, ok bool) {
	dt := cur.total - prev.total
	if dt <= 0 || cur.cpus != prev.cpus || cur.cpus < 2 {
		return 0, false // no time passed, or the CPUs changed: no answer
	}
	o := (cur.busy - prev.busy) - (cur.pair - prev.pair)
	others = max(float64(o), 0) * float64(cur.cpus) / float64(dt)
	return others, others < float64(cur.cpus-2)+gateSlack
}

// parseProcStat sums the per-CPU lines of /proc/stat ("cpu3 user nice
// system idle iowait irq softirq steal guest guest_nice", in ticks) of
// the CPUs that mine says are this process's. Busy is user, nice, system,
// irq, softirq and steal (a hypervisor giving our core to another guest is
// others' work too); guest time is already in user and nice; idle and
// iowait are idle.
func parseProcStat(b []byte, mine func(cpu int) bool) (s cpuSample, ok bool) {
	for line := range bytes.Lines(b) {
		if len(line) < 4 || !bytes.HasPrefix(line, []byte("cpu")) || line[3] < '0' || line[3] > '9' {
			continue
		}
		f := bytes.Fields(line)
		cpu, err := strconv.Atoi(string(f[0][3:]))
		if err != nil || len(f) < 5 {
			return cpuSample{}, false
		}
		if !mine(cpu) {
			continue
		}
		var v [8]int64
		for i := range min(len(f)-1, len(v)) {
			if v[i], err = strconv.ParseInt(string(f[i+1]), 10, 64); err != nil {
				return cpuSample{}, false
			}
		}
		busy := v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
		s.busy += busy
		s.total += busy + v[3] + v[4]
		s.cpus++
	}
	return s, s.cpus > 0
}

// parsePidStat reads a process's CPU time (utime + stime, ticks) from its
// /proc/<pid>/stat: the 14th and 15th fields, the 12th and 13th after the
// command name, which may hold spaces and parentheses.
func parsePidStat(b []byte) (int64, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	ut, err := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err != nil || err2 != nil {
		return 0, false
	}
	return ut + st, true
}
