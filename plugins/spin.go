package plugins

import (
	"runtime"
	"time"
)

// Waiting on the fast-call socket: poll briefly before parking.
//
// A store call through the plugin is two hand-offs between processes (the
// request, the reply). When the reading goroutine parks on the netpoller,
// each hand-off costs a wake-up: the kernel wakes a sleeping thread of the
// other process (a futex, an IPI on a VM) and its Go scheduler goes
// looking for work; on an idle machine that is tens of microseconds per
// hand-off, most of a call. A reader that expects its frame soon therefore
// first polls the socket with non-blocking reads for a short, bounded
// window, and parks only if nothing came.
//
// Polling burns the CPU it waits on, so it is adaptive: a spinner polls
// only while recent waits ended within the window (an idle host, a slow
// backend or a loaded machine, where the other side does not get a core,
// make waits long and switch polling off), re-checks now and then by
// polling anyway, and never polls with a single P (a polling goroutine
// holds its P, and the runtime would then look at the netpoller for the
// process's other goroutines only from sysmon, every 10 ms) or on a
// single CPU (the other side needs the CPU we would spin on), nor while
// other work keeps the machine's cores busy (cpuGate): on a busy two-core
// machine polling measured slower and costlier than parking at once (the
// poller holds a core the other side needs).

const (
	// spinWindow bounds one poll: about what a parked wait costs in
	// wake-ups on an idle VM, so a poll that times out costs no more than
	// the wake-up it tried to avoid.
	spinWindow = 50 * time.Microsecond
	// spinMaxBackoff caps how many waits park at once after polls that
	// timed out (the count doubles with each one in a row): on an idle
	// or overloaded machine one wait in this many polls, to notice when
	// polling pays again.
	spinMaxBackoff = 256
	// spinStall: a gap this long between two polls means the poller lost
	// its core (the machine is overloaded): stop polling this wait.
	spinStall = 20 * time.Microsecond
	// A poll lasts at most spinSoonFactor times how soon frames usually
	// come while polling (spinner.soon), and at least spinMinWindow: a
	// frame much later than usual means the other side lost its core,
	// and polling on for it burns a core for nothing.
	spinSoonFactor = 4
	spinMinWindow  = 10 * time.Microsecond
)

// spinner decides, for one reading side of a fast-call connection, how
// long to poll before parking, and learns from how waits end: a frame
// that came while polling keeps it polling; a poll that timed out makes
// the next waits park at once, 1, 2, 4, ... up to spinMaxBackoff of them
// as timeouts repeat. It is used only by the goroutine that holds the
// reading (not safe for concurrent use; on the host it passes on with the
// read token).
type spinner struct {
	window time.Duration // 0: never poll
	stall  time.Duration // a gap between polls this long ends polling
	// gate: poll only while other work leaves the pair a core each
	// (nil: whatever the machine's load, in tests).
	gate    *cpuGate
	skip    uint32 // waits left that park at once
	backoff uint32 // skip after the next timeout
	// soon is how soon frames usually come while polling: it falls fast
	// (half-way to a sooner one) and rises slowly (a sixteenth of the
	// way), so late frames hardly move it. 0: none yet.
	soon time.Duration
	// Counters for tests and benchmarks: waits that ended while polling,
	// polls that timed out or stalled, waits parked at once.
	hits, misses, parked, stalls uint64
}

// How a wait ended, for learn.
const (
	spinHit     = iota // the frame came while polling
	spinTimeout        // polled for the whole window (or lost the core), then parked
	spinParked         // parked without polling
)

// newSpinner returns a spinner polling up to window, or never (window 0,
// GOMAXPROCS 1, one CPU); peer is the process at the other end of the
// socket (0: unknown, and then it never polls: the gate cannot tell the
// peer's work from others').
func newSpinner(window time.Duration, peer int) *spinner {
	if runtime.GOMAXPROCS(0) < 2 || runtime.NumCPU() < 2 {
		window = 0
	}
	s := &spinner{window: window, stall: spinStall, backoff: 1}
	if window > 0 {
		s.gate = newCPUGate(cpuSampler(peer))
		s.gate.quiet(time.Now()) // the first look: the interval starts now
	}
	return s
}

// off reports whether this spinner never polls.
func (s *spinner) off() bool { return s == nil || s.window == 0 }

// budget is how long the coming wait may poll (0: park at once).
func (s *spinner) budget() time.Duration {
	if s.off() {
		return 0
	}
	if s.skip > 0 {
		s.skip--
		return 0
	}
	if s.gate != nil && !s.gate.quiet(time.Now()) {
		return 0
	}
	if s.soon > 0 {
		return min(s.window, max(spinMinWindow, spinSoonFactor*s.soon))
	}
	return s.window
}

// hitAfter records a wait whose frame came after polling for d. A frame
// there at the first poll (under spinMinWindow/10) says nothing of how
// soon the other side answers.
func (s *spinner) hitAfter(d time.Duration) {
	s.learn(spinHit)
	switch {
	case d < spinMinWindow/10:
	case s.soon == 0:
		s.soon = d
	case d < s.soon:
		s.soon -= (s.soon - d) / 2
	default:
		s.soon += (d - s.soon) / 16
	}
}

// learn records how one wait ended.
func (s *spinner) learn(how int) {
	if s.off() {
		return
	}
	switch how {
	case spinHit:
		s.hits++
		s.backoff = 1
	case spinTimeout:
		s.misses++
		s.skip = s.backoff
		s.backoff = min(s.backoff*2, spinMaxBackoff)
	case spinParked:
		s.parked++
	}
}
