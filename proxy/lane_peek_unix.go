//go:build unix

package proxy

import (
	"crypto/tls"
	"net"
	"syscall"
)

// peeker tells whether the peer closed a pooled connection (or sent bytes
// nobody asked for) while it sat in the pool: one non-blocking MSG_PEEK
// read of the socket, which consumes nothing. A read deadline in the past
// cannot tell: Go returns the timeout without reading the socket. Made
// once per connection: the raw connection and the read callback were two
// allocations per request.
type peeker struct {
	rc     syscall.RawConn
	fn     func(fd uintptr) bool
	closed bool
	b      [1]byte
}

func newPeeker(c net.Conn) *peeker {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	p := &peeker{rc: rc}
	p.fn = p.peek
	return p
}

func (p *peeker) peek(fd uintptr) bool {
	n, _, rerr := syscall.Recvfrom(int(fd), p.b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	// n > 0: unread bytes (a stray response, or a TLS alert such as
	// close_notify); n == 0 without error: EOF; EAGAIN: open and quiet.
	p.closed = n > 0 || (n == 0 && rerr == nil) || rerr != nil && rerr != syscall.EAGAIN && rerr != syscall.EWOULDBLOCK
	return true
}

// peerClosed reports whether the peer closed the connection; a nil peeker
// (not a socket) reports false.
func (p *peeker) peerClosed() bool {
	if p == nil {
		return false
	}
	p.closed = false
	err := p.rc.Read(p.fn)
	return p.closed || err != nil
}

// clientGone reports whether the client hung up c (EOF, or a reset): one
// non-blocking MSG_PEEK read, which consumes nothing. Unlike peerClosed,
// unread bytes are no sign of leaving (a pipelined request, the rest of a
// body), so a client that sent more is taken as present, as net/http's
// background read takes it. Inside a TLS tunnel, where a client's goodbye
// is a record before its FIN, tunnelClientGone looks for the FIN itself.
// Control, not Read: Read would wait for a read in progress on c (a slow
// request body, a head) to end.
func clientGone(c net.Conn, tunnel bool) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	err = rc.Control(func(fd uintptr) {
		if tunnel {
			gone = tunnelClientGone(fd)
			return
		}
		var b [1]byte
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		gone = n == 0 && rerr == nil || rerr != nil && rerr != syscall.EAGAIN && rerr != syscall.EWOULDBLOCK && rerr != syscall.EINTR
	})
	return gone || err != nil
}
