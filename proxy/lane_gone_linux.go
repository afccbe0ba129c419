package proxy

import "golang.org/x/sys/unix"

// tunnelClientGone reports whether the peer of fd shut its side down
// (POLLRDHUP: a FIN, even behind unread bytes) or the socket failed. A
// TLS client closes with a close_notify record (under TLS 1.3 encrypted,
// like any data) and then its FIN; net/http's background read gets EOF
// from the TLS layer there, and this is how the lane sees the same
// without reading.
func tunnelClientGone(fd uintptr) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
	n, err := unix.Poll(fds, 0)
	if err != nil || n == 0 {
		return false
	}
	return fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
}
