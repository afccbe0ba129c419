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

// refill adds the tokens earned since the last call.
func (l *limiter) refill(now time.Time) {
	if !l.last.IsZero() && now.After(l.last) {
		l.tokens = min(max(1, l.rate), l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	if now.After(l.last) {
		l.last = now
	}
}

// available is how many attempts allow would grant now (a large number for
// no limit): what the dispatcher asks the store to lease.
func (l *limiter) available(now time.Time) int {
	if l == nil || l.rate <= 0 {
		return 1 << 30
	}
	l.refill(now)
	return int(l.tokens)
}

func (l *limiter) allow(now time.Time) bool {
	if l == nil || l.rate <= 0 {
		return true
	}
	l.refill(now)
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}
