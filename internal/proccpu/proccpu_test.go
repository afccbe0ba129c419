package proccpu

import (
	"errors"
	"os"
	"runtime"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// A command name with a space and a ")" in it: only the last ")" ends it.
	line := []byte("4242 (rotor (x) y) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 1 0\n")
	got, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if want := 1750 * time.Millisecond; got != want {
		t.Fatalf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"", "4242 rotor S 1", "4242 (rotor) S 1 2", "4242 (rotor) S 1 2 3 4 5 6 7 8 9 10 x 25"} {
		if _, err := parseStat([]byte(bad)); !errors.Is(err, ErrUnavailable) {
			t.Errorf("%q: err %v, want ErrUnavailable", bad, err)
		}
	}
}

func TestOfSelfGrows(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/PID/stat is Linux's")
	}
	before, err := Of(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU until the count moves (bounded: 5 s of spinning at most).
	deadline := time.Now().Add(5 * time.Second)
	x := 0
	for time.Now().Before(deadline) {
		for i := range 1_000_000 {
			x += i
		}
		if now, err := Of(os.Getpid()); err == nil && now > before {
			return
		}
	}
	t.Fatalf("CPU time did not move from %v in 5 s of spinning (%d)", before, x)
}
