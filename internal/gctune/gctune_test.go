package gctune

import (
	"context"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, MaxPercent},
		{1 << 20, MaxPercent},       // a small heap: Headroom is 32x it, capped
		{8 << 20, 400},              // 32 MiB of headroom on 8 MiB live
		{16 << 20, 200},             // on 16 MiB
		{32 << 20, MinPercent},      // from here on, Go's default
		{4 << 30, MinPercent},       // a backlog during an outage: as before
		{Headroom*100/250 + 1, 249}, // in between, proportional
	} {
		if got := Percent(c.live); got != c.want {
			t.Errorf("Percent(%d) = %d, want %d", c.live, got, c.want)
		}
	}
}

// TestRunSetsAndRestores: Run sets GOGC from the live heap while it runs
// and restores what it found when its context ends.
func TestRunSetsAndRestores(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	before := debug.SetGCPercent(150)
	defer debug.SetGCPercent(before)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p := debug.SetGCPercent(-1) // the only way to read it: off for a moment, then back
		debug.SetGCPercent(p)
		if p >= MinPercent && p <= MaxPercent && p != 150 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GOGC is %d while Run runs", p)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p := debug.SetGCPercent(150); p != 150 {
		t.Errorf("after Run GOGC is %d, want the 150 it found", p)
	}
}

// TestRunLeavesOperatorGOGC: with GOGC or GOMEMLIMIT in the environment
// Run changes nothing.
func TestRunLeavesOperatorGOGC(t *testing.T) {
	for _, env := range []string{"GOGC", "GOMEMLIMIT"} {
		t.Setenv("GOGC", "")
		t.Setenv("GOMEMLIMIT", "")
		t.Setenv(env, "100")
		before := debug.SetGCPercent(170)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		if err := Run(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		if p := debug.SetGCPercent(before); p != 170 {
			t.Errorf("GOGC changed to %d with %s in the environment", p, env)
		}
	}
}
