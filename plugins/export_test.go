package plugins

// SpinStats is what the host's spinner of s's fast-call connection has
// counted (waits that ended while polling, polls that timed out, waits
// parked at once) and the load gate's last reading of others' CPU
// (cores); ok false without a fast-call connection. For benchmarks.
func SpinStats(s *Supervised) (hits, misses, parked uint64, others float64, ok bool) {
	r := s.Client.conn.Load()
	if r == nil {
		return 0, 0, 0, 0, false
	}
	f, isFast := r.grpc.(*fastConn)
	if !isFast {
		return 0, 0, 0, 0, false
	}
	f.rtok <- struct{}{} // the spinner is the read token holder's
	defer func() { <-f.rtok }()
	if g := f.spin.gate; g != nil {
		others = g.others
	}
	return f.spin.hits, f.spin.misses, f.spin.parked, others, true
}
