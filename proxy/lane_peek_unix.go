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
