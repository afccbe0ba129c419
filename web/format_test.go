package web

import (
	"strings"
	"testing"
	"time"
)

func TestRoundDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0ms", 734 * time.Microsecond: "734µs", 1234567 * time.Nanosecond: "1ms", 842*time.Millisecond + 400*time.Microsecond: "842ms",
		1234567891 * time.Nanosecond: "1.23s", 12345 * time.Millisecond: "12.3s", 125 * time.Second: "2m05s", 3*time.Hour + 4*time.Minute: "3h04m",
		72 * time.Hour: "3d", 24 * time.Hour: "24h", 2 * time.Minute: "2m",
	} {
		if got := roundDuration(d); got != want {
			t.Errorf("roundDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestChartScale(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 3: 5, 6: 10, 11: 20, 21: 50, 501: 1000} {
		if got := niceCeil(n); got != want {
			t.Errorf("niceCeil(%d) = %d, want %d", n, got, want)
		}
	}
	svg := string(chartSVG(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), make([]int, 24), append(make([]int, 23), 3)))
	if strings.Count(svg, `class="fail"`) != 1 || strings.Contains(svg, `class="ok"`) || !strings.Contains(svg, "23:00 UTC: 0 delivered, 3 failed") {
		t.Fatalf("chart:\n%s", svg)
	}
}

// FuzzFormParsers: the header and time parsers of the forms never panic,
// and headers they accept have non-empty names without colons or spaces
// around them.
func FuzzFormParsers(f *testing.F) {
	f.Add("X-Api-Key: ${{ secrets.A }}\nX-B: c")
	f.Add("2026-03-01T14:30")
	f.Add(":\n: :")
	f.Fuzz(func(t *testing.T, s string) {
		if h, err := parseHeaders(s); err == nil {
			for k := range h {
				if k == "" || strings.TrimSpace(k) != k || strings.Contains(k, ":") {
					t.Fatalf("header name %q from %q", k, s)
				}
			}
		}
		_, _ = parseTime(s)
	})
}
