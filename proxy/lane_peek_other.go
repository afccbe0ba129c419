//go:build !unix

package proxy

import "net"

// peeker cannot look without reading on this platform: a connection is
// taken as open, and a bodiless idempotent request is retried once if it
// was not (laneClient.RoundTrip).
type peeker struct{}

func newPeeker(net.Conn) *peeker { return nil }

func (*peeker) peerClosed() bool { return false }

// clientGone cannot look without reading on this platform: the client is
// taken as present (an exchange it left ends with the upstream's timeouts).
func clientGone(net.Conn, bool) bool { return false }
