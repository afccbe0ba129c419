package plugins

// SpinCounts is what the host's spinner of a fast-call connection has
// counted: waits that ended while polling (Hits), polls that timed out
// (Misses), waits parked at once (Parked); the load gate's intervals
// that opened and closed it, and its last reading of others' CPU (cores).
type SpinCounts struct {
	Hits, Misses, Parked uint64
	Opened, Closed       uint64
	Others               float64
}

// SpinStats returns s's host-side spinner counts; ok false without a
// fast-call connection. For benchmarks.
func SpinStats(s *Supervised) (c SpinCounts, ok bool) {
	r := s.Client.conn.Load()
	if r == nil {
		return c, false
	}
	f, isFast := r.grpc.(*fastConn)
	if !isFast {
		return c, false
	}
	f.rtok <- struct{}{} // the spinner is the read token holder's
	defer func() { <-f.rtok }()
	c = SpinCounts{Hits: f.spin.hits, Misses: f.spin.misses, Parked: f.spin.parked}
	if g := f.spin.gate; g != nil {
		c.Opened, c.Closed, c.Others = g.opened, g.closedN, g.others
	}
	return c, true
}
