//go:build !unix

package proxy

import "net"

// peerClosed cannot look without reading on this platform: a connection is
// taken as open, and a bodiless idempotent request is retried once if it
// was not (laneClient.RoundTrip).
func peerClosed(net.Conn) bool { return false }

// clientGone cannot look without reading on this platform: the client is
// taken as present (an exchange it left ends with the upstream's timeouts).
func clientGone(net.Conn, bool) bool { return false }
