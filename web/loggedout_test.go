package web

import (
	"strconv"
	"testing"
	"time"
)

// TestLoggedOutBounded: the logout list keeps at most maxLoggedOut ids,
// dropping the oldest, and forgets ids whose session has ended anyway.
func TestLoggedOutBounded(t *testing.T) {
	var l loggedOut
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for i := range maxLoggedOut + 100 {
		l.add(strconv.Itoa(i), now.Add(time.Hour), now)
	}
	if len(l.until) != maxLoggedOut || len(l.order) != maxLoggedOut {
		t.Fatalf("%d ids kept, cap %d", len(l.until), maxLoggedOut)
	}
	if l.has("0") || !l.has(strconv.Itoa(maxLoggedOut+99)) {
		t.Fatal("not the oldest dropped")
	}
	// Two hours later every earlier session has ended: one add clears them.
	l.add("late", now.Add(3*time.Hour), now.Add(2*time.Hour))
	if len(l.until) != 1 || !l.has("late") {
		t.Fatalf("%d ids kept after expiry", len(l.until))
	}
}
