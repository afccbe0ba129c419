package dispatch

import (
	"net/http"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	one := func() float64 { return 0.999999 }
	cases := []struct {
		n    int
		want time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {7, 60 * time.Second}, {100, 60 * time.Second}, {0, time.Second}}
	for _, c := range cases {
		got := Backoff(c.n, time.Second, time.Minute, one)
		if got > c.want || got < c.want*99/100 {
			t.Errorf("Backoff(%d) ceiling = %v, want ~%v", c.n, got, c.want)
		}
	}
	if Backoff(5, time.Second, time.Minute, func() float64 { return 0 }) != 0 {
		t.Error("full jitter must reach zero")
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := http.Header{}
	for v, want := range map[string]time.Duration{
		"30":        30 * time.Second,
		"0":         0,
		"999999999": maxRetryAfter,
		now.Add(time.Hour).Format(http.TimeFormat):  time.Hour,
		now.Add(-time.Hour).Format(http.TimeFormat): 0,
	} {
		h.Set("Retry-After", v)
		if got, ok := RetryAfter(h, now); !ok || got != want {
			t.Errorf("Retry-After %q = %v %v, want %v", v, got, ok, want)
		}
	}
	for _, v := range []string{"", "soon", "-5"} {
		h.Set("Retry-After", v)
		if _, ok := RetryAfter(h, now); ok {
			t.Errorf("Retry-After %q accepted", v)
		}
	}
}

func TestEscapeTarget(t *testing.T) {
	in := "https://h/p/${{ secrets.A }}?t=$<< secrets.B >>&x=%20"
	want := "https://h/p/$%7B%7B%20secrets.A%20%7D%7D?t=$%3C%3C%20secrets.B%20%3E%3E&x=%20"
	if got := escapeTarget(in); got != want {
		t.Fatalf("escapeTarget = %q", got)
	}
}
