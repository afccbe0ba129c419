package main

import (
	"testing"
	"time"
)

// TestRoundRatios: each round's variant is set against the same round's
// baseline (not the medians), and the spread is the min and max of those.
func TestRoundRatios(t *testing.T) {
	rs := []result{{rps: 110, cpuPerReq: 45 * time.Microsecond}, {rps: 80, cpuPerReq: 60 * time.Microsecond}, {rps: 100, cpuPerReq: 50 * time.Microsecond}}
	base := []result{{rps: 100, cpuPerReq: 50 * time.Microsecond}, {rps: 100, cpuPerReq: 50 * time.Microsecond}, {rps: 125, cpuPerReq: 40 * time.Microsecond}}
	tp, cpu := roundRatios(rs, base)
	if tp != "0.80-1.10x" || cpu != "0.90-1.25x" {
		t.Fatalf("spread %s throughput, %s CPU; want 0.80-1.10x, 0.90-1.25x", tp, cpu)
	}
	if tp, cpu := roundRatios(rs, nil); tp != "n/a" || cpu != "n/a" {
		t.Fatalf("no baseline: %s, %s", tp, cpu)
	}
}
