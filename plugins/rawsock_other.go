//go:build !linux

package plugins

import "net"

// toRawSock: only Linux takes the socket out of the netpoller; elsewhere
// fast calls park on the netpoller and do not poll.
func toRawSock(c net.Conn, readSlice bool) (fastSock, error) {
	return &netSock{c: c, readSlice: readSlice}, nil
}
