package plugins

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	pb "rotor.sh/rotor/plugins/proto"
)

// procStat is /proc/stat of a two-CPU machine (cpu0, cpu1) as Linux
// writes it, with the aggregate line and the lines that follow the CPUs.
const procStat = `cpu  21165 0 10174 39109 346 0 608 29 0 0
cpu0 10000 5 4000 20000 30 1 300 10 7 0
cpu1 10700 0 5441 18889 309 0 303 18 0 0
intr 1744093 0 9 0 0 0 0 0 0 0
ctxt 3471221
btime 1764466000
processes 5402
procs_running 3
procs_blocked 0
softirq 912345 0 1 2 3 4 5 6 7 8
`

func TestParseProcStat(t *testing.T) {
	all := func(int) bool { return true }
	s, ok := parseProcStat([]byte(procStat), all)
	// Busy: user + nice + system + irq + softirq + steal (guest is in user).
	busy0, busy1 := int64(10000+5+4000+1+300+10), int64(10700+0+5441+0+303+18)
	if !ok || s.cpus != 2 || s.busy != busy0+busy1 || s.total != busy0+20000+30+busy1+18889+309 {
		t.Fatalf("parseProcStat = %+v, %v", s, ok)
	}
	// Only the CPUs this process may run on count.
	s, ok = parseProcStat([]byte(procStat), func(cpu int) bool { return cpu == 1 })
	if !ok || s.cpus != 1 || s.busy != busy1 || s.total != busy1+18889+309 {
		t.Fatalf("parseProcStat, cpu1 only = %+v, %v", s, ok)
	}
	// An old kernel's four fields: user, nice, system, idle.
	if s, ok := parseProcStat([]byte("cpu0 1 2 3 4\n"), all); !ok || s.busy != 6 || s.total != 10 {
		t.Fatalf("four fields: %+v, %v", s, ok)
	}
	for _, bad := range []string{"", "cpu  1 2 3 4\n", "cpu0 1 2 3\n", "cpu0 1 x 3 4\n", "cpux 1 2 3 4\n", "cpu0 1 2 3 4\ncpu1 1 2\n"} {
		if s, ok := parseProcStat([]byte(bad), all); ok {
			t.Errorf("parseProcStat(%q) = %+v, ok", bad, s)
		}
	}
	if _, ok := parseProcStat([]byte(procStat), func(int) bool { return false }); ok {
		t.Error("parseProcStat with none of the CPUs ours: ok")
	}
}

func TestParsePidStat(t *testing.T) {
	// The command name may hold spaces and parentheses: fields count from
	// the last ")". utime 1200, stime 34.
	line := "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 1200 34 0 0 20 0 9 0 100 1000000 500\n"
	if n, ok := parsePidStat([]byte(line)); !ok || n != 1234 {
		t.Fatalf("parsePidStat = %d, %v; want 1234", n, ok)
	}
	for _, bad := range []string{"", "4242 (x S 1", "4242 (x) S 1 2 3", "4242 (x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 u 34 0"} {
		if n, ok := parsePidStat([]byte(bad)); ok {
			t.Errorf("parsePidStat(%q) = %d, ok", bad, n)
		}
	}
	if runtime.GOOS == "linux" {
		b, err := os.ReadFile("/proc/self/stat")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := parsePidStat(b); !ok {
			t.Fatalf("parsePidStat(/proc/self/stat %q): not ok", b)
		}
	}
}

// fakeMachine feeds a cpuGate samples of a two-CPU machine: each look
// advances the clock by one interval in which the pair used pair cores
// and others the rest of busy.
type fakeMachine struct {
	s     cpuSample
	looks int
	fail  bool
}

func (m *fakeMachine) sample() (cpuSample, bool) {
	m.looks++
	return m.s, !m.fail
}

// advance moves the machine on by d with the pair using pair cores and
// others others cores (ticks of 10 ms).
func (m *fakeMachine) advance(d time.Duration, pair, others float64) {
	ticks := float64(d / (10 * time.Millisecond))
	m.s.total += int64(ticks * float64(m.s.cpus))
	m.s.busy += int64(ticks * (pair + others))
	m.s.pair += int64(ticks * pair)
}

// TestCPUGateIgnoresThePair: a machine whose busy time is all the pair's
// (two pollers ping-ponging on two CPUs) reads as quiet; others' work
// closes the gate once it takes more than the slack; the answer is cached
// for an interval, a stale look says nothing, and a look that fails
// closes the gate.
func TestCPUGateIgnoresThePair(t *testing.T) {
	m := &fakeMachine{s: cpuSample{cpus: 2, busy: 1000, total: 5000, pair: 100}}
	g := newCPUGate(m.sample)
	now := time.Unix(1000, 0)
	if g.quiet(now) {
		t.Fatal("open on the first look (no interval yet)")
	}
	step := func(pair, others float64, want bool) {
		t.Helper()
		now = now.Add(gateEvery)
		m.advance(gateEvery, pair, others)
		if got := g.quiet(now); got != want {
			t.Fatalf("pair %.2f, others %.2f cores: quiet %v, want %v (others read %.2f)", pair, others, got, want, g.others)
		}
	}
	step(2, 0, true)     // both CPUs busy, all with the pair's polling
	step(1.2, 0, true)   // the pair parked part of the time
	step(2, 0.2, true)   // others under the slack
	step(1, 0.4, false)  // others over it, though the machine has idle time
	step(0, 1, false)    // others' work alone
	step(1.5, 0.1, true) // quiet again
	looks := m.looks
	for i := range 10 { // within the interval: the cached answer, no look
		if !g.quiet(now.Add(time.Duration(i) * gateEvery / 10)) {
			t.Fatal("the cached answer changed")
		}
	}
	if m.looks != looks {
		t.Fatalf("%d looks within one interval", m.looks-looks)
	}
	if g.opened != 4 || g.closedN != 2 {
		t.Fatalf("opened %d, closed %d; want 4, 2", g.opened, g.closedN)
	}

	// An idle connection: the next look, long after, says nothing about
	// now; the one after it does.
	now = now.Add(time.Minute)
	m.advance(time.Minute, 0, 0)
	if g.quiet(now) {
		t.Fatal("open after a stale look")
	}
	step(2, 0, true)

	// A look that fails (the peer exited) closes the gate.
	m.fail = true
	now = now.Add(gateEvery)
	if g.quiet(now) {
		t.Fatal("open after a failed look")
	}
	m.fail = false
	now = now.Add(gateEvery)
	if g.quiet(now) {
		t.Fatal("open on the look after a failed one")
	}
	step(2, 0, true)

	// No sampler (peer unknown, no /proc): never open.
	if newCPUGate(nil).quiet(now) {
		t.Fatal("a gate without a sampler is open")
	}
}

func TestOthersIdle(t *testing.T) {
	prev := cpuSample{cpus: 4, busy: 100, total: 1000, pair: 50}
	for _, tc := range []struct {
		cur    cpuSample
		others float64
		ok     bool
	}{
		// 100 ticks on 4 CPUs (25 each): others 1 core of 4 -> 2.25 allowed.
		{cpuSample{cpus: 4, busy: 175, total: 1100, pair: 100}, 1, true},
		{cpuSample{cpus: 4, busy: 206, total: 1100, pair: 100}, 2.24, true},
		{cpuSample{cpus: 4, busy: 207, total: 1100, pair: 100}, 2.28, false},
		// The pair's accounting ahead of the machine's: others 0.
		{cpuSample{cpus: 4, busy: 150, total: 1100, pair: 110}, 0, true},
		// No time, time backwards, CPUs changed, one CPU: no answer.
		{cpuSample{cpus: 4, busy: 100, total: 1000, pair: 50}, 0, false},
		{cpuSample{cpus: 4, busy: 100, total: 900, pair: 50}, 0, false},
		{cpuSample{cpus: 3, busy: 150, total: 1100, pair: 100}, 0, false},
	} {
		others, ok := othersIdle(prev, tc.cur)
		if ok != tc.ok || others < tc.others-0.001 || others > tc.others+0.001 {
			t.Errorf("othersIdle(%+v) = %.3f, %v; want %.3f, %v", tc.cur, others, ok, tc.others, tc.ok)
		}
	}
	if _, ok := othersIdle(cpuSample{cpus: 1, total: 10}, cpuSample{cpus: 1, total: 20}); ok {
		t.Error("open on one CPU")
	}
}

// TestCPUSampler: on Linux the sampler reads this machine's /proc: the
// CPUs this process may run on, and this process's and its peer's time.
func TestCPUSampler(t *testing.T) {
	if cpuSampler(0) != nil {
		t.Fatal("a sampler for an unknown peer")
	}
	if runtime.GOOS != "linux" {
		if cpuSampler(os.Getppid()) != nil {
			t.Fatal("a sampler off Linux")
		}
		return
	}
	s, ok := cpuSampler(os.Getppid())()
	if !ok || s.cpus != runtime.NumCPU() || s.total <= 0 || s.busy > s.total || s.pair < 0 {
		t.Fatalf("sample = %+v, %v", s, ok)
	}
	if _, ok := cpuSampler(1 << 30)(); ok { // no such process
		t.Fatal("a sample of a process that does not exist")
	}
}

// TestFastSockPeer: each end of a fast-call socket learns the other's pid
// (SO_PEERCRED), on the connecting side and the accepting side, and the
// host's spinner is gated on the real plugin's pid.
func TestFastSockPeer(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the peer's pid is read on Linux only")
	}
	path := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []net.Conn{c, <-accepted} {
		if c == nil {
			t.Fatal("accept failed")
		}
		s, err := newFastSock(c, true)
		if err != nil {
			t.Fatal(err)
		}
		if s.peer() != os.Getpid() {
			t.Errorf("peer %d, want this process %d", s.peer(), os.Getpid())
		}
		s.Close()
	}

	st, err := Launch(context.Background(), LaunchOptions{Path: os.Args[0], Env: []string{"ROTOR_TEST_AS_PLUGIN=1"},
		Config: &pb.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(t.TempDir(), "rotor.db")}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f := st.Client.conn.Load().grpc.(*fastConn)
	if f.c.peer() != st.Pid() || st.Pid() == 0 {
		t.Fatalf("the host's peer is %d, the plugin %d", f.c.peer(), st.Pid())
	}
	if !f.spin.off() && (f.spin.gate == nil || f.spin.gate.sample == nil) {
		t.Fatal("the host's spinner has no load gate")
	}
}
