package dispatch

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// maxRetryAfter caps how far a Retry-After answer can push a retry.
const maxRetryAfter = 24 * time.Hour

// Backoff is exponential backoff with full jitter: a uniformly random delay
// in [0, min(cap, base * 2^(n-1))) before retry n (n >= 1). rnd returns a
// float in [0, 1); it is injected so tests can pin it.
func Backoff(n int, base, cap time.Duration, rnd func() float64) time.Duration {
	if n < 1 {
		n = 1
	}
	ceiling := cap
	if n <= 62 {
		if d := base << (n - 1); d > 0 && d < cap {
			ceiling = d
		}
	}
	return time.Duration(rnd() * float64(ceiling))
}

func defaultRand() float64 { return rand.Float64() }

// RetryAfter parses a Retry-After header (seconds or an HTTP date), capped
// at a day; ok is false when there is none or it cannot be read. The
// dispatcher and the workflow engine honour it for 429 and 503 answers.
func RetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return min(time.Duration(secs)*time.Second, maxRetryAfter), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter), true
	}
	return 0, false
}
