package dispatch

import "time"

// limiter is a token bucket for a queue's rate_per_second (burst 1 second's
// worth). A zero rate is no limit. Callers hold the dispatcher's lock.
type limiter struct {
	rate   float64
	tokens float64
	last   time.Time
}

func newLimiter(rate float64) *limiter { return &limiter{rate: rate, tokens: max(1, rate)} }

func (l *limiter) allow(now time.Time) bool {
	if l == nil || l.rate <= 0 {
		return true
	}
	if !l.last.IsZero() {
		l.tokens = min(max(1, l.rate), l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}
