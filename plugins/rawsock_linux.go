package plugins

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// rawSock is the fast-call socket taken out of the Go netpoller: a
// blocking descriptor wrapped in an os.File (which keeps it open while a
// read or write is in progress and closes it after the last one).
//
// Why: a descriptor in the netpoller (epoll, edge-triggered) reports every
// frame that arrives to whichever thread of the process is blocked in
// epoll_wait, the idle P's thread, even when a polling reader takes the
// frame itself. On a two-core machine where each process has one reader
// polling, that woken thread must take a core from one of them: measured,
// it undid what polling saves (77 us per call against 27 us with one P
// per process, which leaves no thread in epoll_wait). Out of the netpoller
// nothing is told of a frame but the reader: it polls with non-blocking
// reads (MSG_DONTWAIT), and parks in a blocking read, which the kernel
// ends itself when bytes come: one wake-up, of the thread that needs it.
//
// A blocking read cannot be cut by a deadline, so reads and writes time
// out every ioSlice (SO_RCVTIMEO, SO_SNDTIMEO) and the caller checks its
// context between slices; shutdown ends a blocked read at once.
type rawSock struct {
	f  *os.File
	rc syscall.RawConn
	// recvFn is one non-blocking read into rbuf, made once: a closure
	// made per poll would be an allocation per poll. Only the reader
	// (one at a time) uses them.
	recvFn func(fd uintptr) bool
	rbuf   []byte
	rn     int
	rerr   syscall.Errno
	pid    int // the peer's, from SO_PEERCRED (0: unknown)
}

// toRawSock takes c's descriptor out of the netpoller (c is closed).
// readSlice false: a read blocks until bytes come or the socket is shut
// down (the plugin's reader, which has no deadline).
func toRawSock(c net.Conn, readSlice bool) (fastSock, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("fast-call socket: %T has no descriptor", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd, pid := -1, 0
	var derr error
	if err := rc.Control(func(fd uintptr) {
		// The peer's pid, for the load gate (cpugate.go): the process
		// that connected, or listened, at connect time.
		if cred, err := syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED); err == nil {
			pid = int(cred.Pid)
		}
		var r uintptr
		var e syscall.Errno
		r, _, e = syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			derr = e
			return
		}
		nfd = int(r)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, derr
	}
	c.Close() // the original leaves the netpoller; the duplicate stays open
	if err := rawSetup(nfd, readSlice); err != nil {
		syscall.Close(nfd)
		return nil, err
	}
	// A blocking descriptor: os.NewFile keeps it out of the netpoller.
	f := os.NewFile(uintptr(nfd), "fast.sock")
	frc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	s := &rawSock{f: f, rc: frc, pid: pid}
	s.recvFn = func(fd uintptr) bool {
		// Non-blocking by flag: a raw syscall, which never blocks.
		r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(unsafe.SliceData(s.rbuf))), uintptr(len(s.rbuf)), syscall.MSG_DONTWAIT, 0, 0)
		s.rn, s.rerr = int(r), e
		return true
	}
	return s, nil
}

func rawSetup(fd int, readSlice bool) error {
	if err := syscall.SetNonblock(fd, false); err != nil {
		return err
	}
	tv := syscall.NsecToTimeval(int64(ioSlice))
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv); err != nil {
		return err
	}
	if readSlice {
		return syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	}
	return nil
}

func (s *rawSock) read(p []byte) (int, error) {
	n, err := s.f.Read(p)
	if errors.Is(err, syscall.EAGAIN) {
		return n, errSlice
	}
	return n, err
}

func (s *rawSock) tryRead(p []byte) (n int, err error) {
	s.rbuf = p
	err = s.rc.Read(s.recvFn)
	s.rbuf = nil
	if err != nil {
		return 0, err
	}
	n, serr := s.rn, s.rerr
	switch serr {
	case 0:
		if n == 0 && len(p) > 0 {
			return 0, io.EOF
		}
		return n, nil
	case syscall.EAGAIN, syscall.EINTR:
		return 0, nil
	}
	return 0, serr
}

func (s *rawSock) canPoll() bool { return true }
func (s *rawSock) peer() int     { return s.pid }

func (s *rawSock) write(p []byte, deadline time.Time, done <-chan struct{}) error {
	for len(p) > 0 {
		n, err := s.f.Write(p)
		p = p[n:]
		if err == nil {
			continue
		}
		if !errors.Is(err, syscall.EAGAIN) {
			return err
		}
		if stopped(deadline, done) {
			return os.ErrDeadlineExceeded
		}
	}
	return nil
}

func (s *rawSock) shutdown() {
	s.rc.Control(func(fd uintptr) { syscall.Shutdown(int(fd), syscall.SHUT_RDWR) })
}

// Close shuts the socket down and releases the descriptor (once no read
// or write is in progress on it).
func (s *rawSock) Close() error {
	s.shutdown()
	return s.f.Close()
}
