package plugins

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage"
)

// TestSpinnerBacksOff: polls that time out make the next waits park at
// once, 1, 2, 4, ... up to spinMaxBackoff of them; a frame caught while
// polling resets that.
func TestSpinnerBacksOff(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 || runtime.NumCPU() < 2 {
		t.Skip("polling is off with one P or one CPU")
	}
	s := newSpinner(spinWindow, 0)
	s.gate = nil // whatever the machine's load
	if s.budget() != spinWindow {
		t.Fatal("a new spinner does not poll")
	}
	s.learn(spinHit)
	parkedRun := func() int {
		n := 0
		for s.budget() == 0 {
			n++
			if n > 10*spinMaxBackoff {
				t.Fatal("never polls again")
			}
		}
		return n
	}
	want := 1
	for range 12 {
		s.learn(spinTimeout)
		if got := parkedRun(); got != want {
			t.Fatalf("after a timeout: %d waits parked at once, want %d", got, want)
		}
		want = min(want*2, spinMaxBackoff)
	}
	s.learn(spinHit)
	s.learn(spinTimeout)
	if got := parkedRun(); got != 1 {
		t.Fatalf("after a hit and a timeout: %d waits parked, want 1", got)
	}
	if s.hits != 2 || s.misses != 13 {
		t.Fatalf("counters: %d hits, %d misses", s.hits, s.misses)
	}
}

// TestSpinnerOffWithOneP: with one P a polling goroutine would hold the
// only P, and the process's other goroutines would wait for sysmon to
// look at the netpoller: no polling at all.
func TestSpinnerOffWithOneP(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	s := newSpinner(spinWindow, os.Getpid())
	if !s.off() || s.budget() != 0 {
		t.Fatal("a spinner polls with GOMAXPROCS 1")
	}
	if !newSpinner(0, os.Getpid()).off() {
		t.Fatal("a spinner with no window polls")
	}
}

// fakePlugin listens on a Unix socket and runs serve on the first
// connection after reading its hello; it returns the socket's path.
func fakePlugin(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fast.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		hello := make([]byte, frameHeader+fastTokenLen) // exactly: calls may follow at once
		if _, err := io.ReadFull(c, hello); err != nil {
			return
		}
		serve(c)
	}()
	return path
}

// readCalls reads n call frames from fr, returning their ids and the
// workspace ids they ask for.
func readCalls(fr *frameReader, n int) (ids []uint64, names []string, err error) {
	for len(ids) < n {
		kind, id, body, ok, err := fr.next()
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			if err := fr.fill(); err != nil {
				return nil, nil, err
			}
			continue
		}
		if kind != frameCall || len(body) < 10 {
			continue // a cancel
		}
		ml := int(binary.LittleEndian.Uint16(body[8:]))
		var req pb.GetWorkspaceRequest
		if err := proto.Unmarshal(body[10+ml:], &req); err != nil {
			return nil, nil, err
		}
		ids, names = append(ids, id), append(names, req.Id)
	}
	return ids, names, nil
}

const getWorkspace = "/rotor.storage.v2.Workspaces/GetWorkspace"

// TestFastSpinOutOfOrderReplies: many callers at once over a real Unix
// socket (so the host polls), the plugin answering each batch of calls in
// reverse order: every caller gets its own reply, whoever read it, and
// replies were caught while polling.
func TestFastSpinOutOfOrderReplies(t *testing.T) {
	for _, tc := range []struct {
		name   string
		window time.Duration
	}{{"polling", 10 * time.Second}, {"default", spinWindow}, {"parked", 0}} {
		t.Run(tc.name, func(t *testing.T) { testOutOfOrder(t, tc.window) })
	}
}

func testOutOfOrder(t *testing.T, window time.Duration) {
	const callers, rounds = 8, 50
	path := fakePlugin(t, func(c net.Conn) {
		fr := newFrameReader(&netSock{c: c})
		for range rounds {
			ids, names, err := readCalls(fr, callers)
			if err != nil {
				return
			}
			for i := len(ids) - 1; i >= 0; i-- {
				b, _ := proto.Marshal(&pb.GetWorkspaceResponse{Workspace: &pb.Workspace{Id: names[i], Name: names[i]}})
				if _, err := c.Write(finish(append(appendHeader(nil, frameReply, ids[i]), b...))); err != nil {
					return
				}
			}
		}
	})
	f, err := dialFast(context.Background(), path, make([]byte, fastTokenLen), nil, window)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	polling := window > time.Second && !f.spin.off()
	if polling {
		f.spin.stall, f.spin.gate = time.Hour, nil // the reading caller always polls, however loaded the machine
	}
	if runtime.GOOS == "linux" && !f.c.canPoll() {
		t.Fatalf("the host's socket is %T, want it out of the netpoller (polled)", f.c)
	}
	errs := make(chan error, callers)
	for i := range callers {
		go func() {
			for j := range rounds {
				name := "ws" + strconv.Itoa(i) + "-" + strconv.Itoa(j)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				var resp pb.GetWorkspaceResponse
				err := f.Invoke(ctx, getWorkspace, &pb.GetWorkspaceRequest{Id: name}, &resp)
				cancel()
				if err == nil && resp.Workspace.GetName() != name {
					err = errors.New("asked for " + name + ", got " + resp.Workspace.GetName())
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range callers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	f.rtok <- struct{}{} // the spinner is the read token holder's
	defer func() { <-f.rtok }()
	if polling && f.spin.hits == 0 {
		t.Fatalf("no reply was caught while polling: %+v", *f.spin)
	}
}

// TestFastCancelWhilePolling: a caller whose plugin does not answer,
// polling (a window far longer than the test), gives up as soon as its
// context is cancelled, and a cancel frame reaches the plugin.
func TestFastCancelWhilePolling(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 || runtime.NumCPU() < 2 {
		t.Skip("polling is off with one P or one CPU")
	}
	cancelled := make(chan uint64, 1)
	path := fakePlugin(t, func(c net.Conn) {
		fr := newFrameReader(&netSock{c: c})
		for range 2 {
			kind, id, _, ok, err := fr.next()
			for err == nil && !ok {
				if err = fr.fill(); err == nil {
					kind, id, _, ok, err = fr.next()
				}
			}
			if err != nil {
				return
			}
			if kind == frameCancel {
				cancelled <- id
				return
			}
		}
	})
	f, err := dialFast(context.Background(), path, make([]byte, fastTokenLen), nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	f.spin.stall, f.spin.gate = time.Hour, nil
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	err = f.Invoke(ctx, getWorkspace, &pb.GetWorkspaceRequest{Id: "ws"}, &pb.GetWorkspaceResponse{})
	if status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled call: %v, want Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the cancelled call returned after %s", d)
	}
	select {
	case id := <-cancelled:
		if id != 1 {
			t.Fatalf("cancel frame for call %d, want 1", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no cancel frame reached the plugin")
	}
	// The connection still serves: the spinner gave up its wait cleanly.
	if err := f.failure(); err != nil {
		t.Fatalf("the connection failed: %v", err)
	}
}

// TestFastPluginKilledWhilePolling: the plugin process is SIGKILLed while
// the host polls for its reply: the call fails at once as unavailable
// (not at its deadline), and once the store is closed no goroutine of the
// call is left.
func TestFastPluginKilledWhilePolling(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 || runtime.NumCPU() < 2 {
		t.Skip("polling is off with one P or one CPU")
	}
	s, err := Launch(context.Background(), LaunchOptions{Path: os.Args[0], Env: []string{"ROTOR_TEST_AS_PLUGIN=hang"},
		CallTimeout: time.Minute, Config: &pb.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(t.TempDir(), "rotor.db")}})
	if err != nil {
		t.Fatal(err)
	}
	f := s.Client.conn.Load().grpc.(*fastConn)
	f.spin = newSpinner(time.Hour, 0) // no call has read yet: always polling
	f.spin.stall, f.spin.gate = time.Hour, nil
	done := make(chan error, 1)
	go func() {
		_, err := s.GetWorkspace(context.Background(), "ws")
		done <- err
	}()
	time.Sleep(200 * time.Millisecond) // the call is in the plugin, the host polling
	start := time.Now()
	if err := syscall.Kill(s.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("call to a killed plugin: %v, want ErrUnavailable", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("the call failed %s after the kill", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the call did not fail after its plugin was killed")
	}
	if f.spin.hits != 0 || f.spin.misses != 0 {
		t.Fatalf("the wait did not end while polling: %+v", *f.spin)
	}
	s.Close()
	// No goroutine is left in the fast path (others of the package's
	// earlier tests, gRPC's, may still be winding down).
	for i := 0; ; i++ {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "plugins.(*fastConn)") && !strings.Contains(stacks, "plugins.(*rawSock)") &&
			!strings.Contains(stacks, "plugins.(*frameReader)") {
			break
		}
		if i == 100 {
			t.Fatalf("goroutines left in the fast path:\n%s", stacks)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFastNoSpin: with polling off calls work and the host never polls.
func TestFastNoSpin(t *testing.T) {
	s, err := Launch(context.Background(), LaunchOptions{Path: os.Args[0], Env: []string{"ROTOR_TEST_AS_PLUGIN=1"}, FastSpin: -1,
		Config: &pb.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(t.TempDir(), "rotor.db")}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f := s.Client.conn.Load().grpc.(*fastConn)
	for range 200 {
		if _, err := s.GetWorkspace(context.Background(), "nope"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("%v, want ErrNotFound", err)
		}
	}
	f.rtok <- struct{}{}
	defer func() { <-f.rtok }()
	if !f.spin.off() || f.spin.hits+f.spin.misses != 0 {
		t.Fatalf("FastSpin -1: the host polled: %+v", *f.spin)
	}
}

// TestFastSocketRemovedAfterSIGKILL: a plugin killed with SIGKILL cannot
// remove its fast-call socket; the host, which knows it, does once the
// plugin has exited (here: a host that never connected to it, so the
// plugin did not remove it at the hello).
func TestFastSocketRemovedAfterSIGKILL(t *testing.T) {
	tmp := t.TempDir()
	s, err := Launch(context.Background(), LaunchOptions{Path: os.Args[0], Env: []string{"ROTOR_TEST_AS_PLUGIN=1", "TMPDIR=" + tmp},
		NoFastCalls: true, Config: &pb.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(t.TempDir(), "rotor.db")}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.mu.Lock()
	sock := s.fastSocket
	s.mu.Unlock()
	if filepath.Dir(filepath.Dir(sock)) != tmp {
		t.Fatalf("fast socket %q, want one in %s", sock, tmp)
	}
	if _, err := os.Stat(sock); err != nil {
		t.Fatal(err)
	}
	pid := s.Pid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Dir(sock)); errors.Is(err, os.ErrNotExist) {
			break
		}
		if i == 600 {
			t.Fatalf("the killed plugin's socket directory %s is still there", filepath.Dir(sock))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The restarted plugin has a socket of its own, removed on Close.
	for i := 0; s.Pid() == pid || s.Pid() == 0; i++ {
		if i == 600 {
			t.Fatal("the plugin was not restarted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.mu.Lock()
	sock2 := s.fastSocket
	s.mu.Unlock()
	if sock2 == sock || sock2 == "" {
		t.Fatalf("restarted plugin's socket %q (was %q)", sock2, sock)
	}
	s.Close()
	if _, err := os.Stat(filepath.Dir(sock2)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after Close the socket directory: %v", err)
	}
}

// TestRemoveFastSocketOnlyRemovesItsOwn: the path comes from the plugin;
// the host removes nothing but a fast.sock socket and its emptied
// rotor-plugin-* directory.
func TestRemoveFastSocketOnlyRemovesItsOwn(t *testing.T) {
	tmp := t.TempDir()
	mk := func(dir, name string, sock bool) string {
		d := filepath.Join(tmp, dir)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(d, name)
		if sock {
			l, err := net.Listen("unix", p)
			if err != nil {
				t.Fatal(err)
			}
			l.(*net.UnixListener).SetUnlinkOnClose(false)
			l.Close()
		} else if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keep := []string{
		mk("other", "fast.sock", true),            // not a rotor-plugin-* directory
		mk(fastDirPrefix+"a", "fast.sock", false), // not a socket
		mk(fastDirPrefix+"b", "other.sock", true), // not fast.sock
		mk(fastDirPrefix+"c", "keep", false),      // a file beside the socket
	}
	removeFastSocket(keep[0])
	removeFastSocket(keep[1])
	removeFastSocket(keep[2])
	sockC := mk(fastDirPrefix+"c", "fast.sock", true)
	removeFastSocket(sockC)
	removeFastSocket("")
	for _, p := range keep {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if _, err := os.Lstat(sockC); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket beside a file was not removed: %v", err)
	}
	ok := mk(fastDirPrefix+"d", "fast.sock", true)
	removeFastSocket(ok)
	if _, err := os.Stat(filepath.Dir(ok)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the plugin's own socket directory: %v", err)
	}
}

func TestParseFastSpin(t *testing.T) {
	for v, want := range map[string]time.Duration{"": spinWindow, "off": 0, "0s": 0, "20us": 20 * time.Microsecond,
		"-1s": spinWindow, "1h": spinWindow, "junk": spinWindow} {
		if got := parseFastSpin(v); got != want {
			t.Errorf("parseFastSpin(%q) = %v, want %v", v, got, want)
		}
	}
}

// TestSpinnerWindowFollowsHits: a poll lasts about spinSoonFactor times
// how soon frames have come while polling (never under spinMinWindow nor
// over the window); late frames hardly lengthen it, frames there at the
// first poll do not shorten it.
func TestSpinnerWindowFollowsHits(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 || runtime.NumCPU() < 2 {
		t.Skip("polling is off with one P or one CPU")
	}
	s := newSpinner(spinWindow, 0)
	s.gate = nil
	if s.budget() != spinWindow {
		t.Fatal("no hit yet: not the whole window")
	}
	for range 20 {
		s.hitAfter(8 * time.Microsecond)
	}
	if got := s.budget(); got != spinSoonFactor*8*time.Microsecond {
		t.Fatalf("after hits at 8us: budget %v", got)
	}
	s.hitAfter(0) // the frame was there already
	s.hitAfter(200 * time.Nanosecond)
	if got := s.budget(); got != spinSoonFactor*8*time.Microsecond {
		t.Fatalf("after frames at the first poll: budget %v", got)
	}
	s.hitAfter(45 * time.Microsecond) // the other side lost its core once
	if got := s.budget(); got > spinSoonFactor*11*time.Microsecond {
		t.Fatalf("one late frame: budget %v", got)
	}
	for range 10 {
		s.hitAfter(time.Microsecond)
	}
	if got := s.budget(); got != spinMinWindow {
		t.Fatalf("after hits at 1us: budget %v, want the minimum %v", got, spinMinWindow)
	}
	for range 200 {
		s.hitAfter(time.Millisecond)
	}
	if got := s.budget(); got != spinWindow {
		t.Fatalf("after slow hits: budget %v, want the window %v", got, spinWindow)
	}
}
