//go:build unix

package proxy

import (
	"crypto/tls"
	"net"
	"syscall"
)

// peerClosed reports whether the peer closed c (or sent bytes nobody asked
// for) while it sat in the pool: one non-blocking MSG_PEEK read of the
// socket, which consumes nothing. A read deadline in the past cannot tell:
// Go returns the timeout without reading the socket.
func peerClosed(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// n > 0: unread bytes (a stray response, or a TLS alert such as
		// close_notify); n == 0 without error: EOF; EAGAIN: open and quiet.
		closed = n > 0 || (n == 0 && rerr == nil) || rerr != nil && rerr != syscall.EAGAIN && rerr != syscall.EWOULDBLOCK
		return true
	})
	return closed || err != nil
}
