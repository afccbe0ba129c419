package plugins

import (
	"errors"
	"net"
	"os"
	"time"
)

// fastSock is one end of a fast-call connection as its reader and
// writers use it.
type fastSock interface {
	// read blocks until p has some bytes; with a read slice, errSlice
	// when the slice elapsed first.
	read(p []byte) (int, error)
	// tryRead never blocks: 0, nil when nothing has come.
	tryRead(p []byte) (int, error)
	// canPoll says whether tryRead works (else a reader only parks).
	canPoll() bool
	// peer is the pid of the process at the other end (0: unknown).
	peer() int
	// write writes all of p by deadline (zero: none), giving up between
	// slices once done is closed. A write cut short leaves the stream
	// broken: the caller fails the connection.
	write(p []byte, deadline time.Time, done <-chan struct{}) error
	// shutdown ends the connection for both sides; a blocked read
	// returns at once.
	shutdown()
	Close() error
}

// ioSlice bounds one blocking read or write: how late a cancelled or
// expired call notices (the host side), and how often a parked reader
// with a read timeout wakes while it waits.
const ioSlice = 2 * time.Millisecond

// errSlice is a blocking read or write that ran out of its slice.
var errSlice = errors.New("fast-call socket: i/o slice elapsed")

func stopped(deadline time.Time, done <-chan struct{}) bool {
	if !deadline.IsZero() && time.Now().After(deadline) {
		return true
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// netSock is a fast-call connection over any net.Conn (net.Pipe in
// tests): it cannot be polled, and its slices are read deadlines.
type netSock struct {
	c         net.Conn
	readSlice bool
}

func (s *netSock) read(p []byte) (int, error) {
	if s.readSlice {
		s.c.SetReadDeadline(time.Now().Add(ioSlice))
	}
	n, err := s.c.Read(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return n, errSlice
	}
	return n, err
}

func (s *netSock) tryRead([]byte) (int, error) { return 0, errors.ErrUnsupported }
func (s *netSock) canPoll() bool               { return false }
func (s *netSock) peer() int                   { return 0 }

func (s *netSock) write(p []byte, deadline time.Time, done <-chan struct{}) error {
	for len(p) > 0 {
		dl := time.Now().Add(ioSlice)
		if !deadline.IsZero() && deadline.Before(dl) {
			dl = deadline
		}
		s.c.SetWriteDeadline(dl)
		n, err := s.c.Write(p)
		p = p[n:]
		if err == nil {
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) || stopped(deadline, done) {
			return err
		}
	}
	return nil
}

func (s *netSock) shutdown()    { s.c.Close() }
func (s *netSock) Close() error { return s.c.Close() }

// newFastSock takes over c for fast calls: out of the netpoller when it is
// a Unix socket (rawSock), as it is otherwise.
func newFastSock(c net.Conn, readSlice bool) (fastSock, error) {
	if _, ok := c.(*net.UnixConn); ok {
		return toRawSock(c, readSlice)
	}
	return &netSock{c: c, readSlice: readSlice}, nil
}
