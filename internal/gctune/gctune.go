// Package gctune sets rotor serve's garbage collection target from its live
// heap (issue 15). The server's live heap is small (a few MB: caches,
// pools, the audit queue) while a proxy allocates several KB per request,
// so with Go's default GOGC=100 it collected every few MB of request
// garbage: five to ten cycles a second under load, each paying the fixed
// costs of a cycle (stacks, globals, write barriers while marking, assists
// and sweeping), about a tenth of the proxy's CPU per request. Here the
// target gives every cycle about Headroom bytes of allocation, between
// GOGC=100 (a large live heap, such as an audit backlog during a storage
// outage, is collected as before) and GOGC=400 (the storage plugin's own
// setting): at most Headroom more heap than Go's default, never less
// often than it. An operator's GOGC or GOMEMLIMIT in the environment wins.
package gctune

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

const (
	// Headroom is the allocation a collection cycle is given, when the
	// live heap allows it within [MinPercent, MaxPercent].
	Headroom = 32 << 20
	// MinPercent and MaxPercent bound the GOGC set.
	MinPercent = 100
	MaxPercent = 400
	// Interval is how often the live heap is read.
	Interval = time.Second
)

// Percent is the GOGC for a live heap of live bytes.
func Percent(live uint64) int {
	if live == 0 {
		return MaxPercent
	}
	return int(min(max(uint64(Headroom)*100/live, MinPercent), MaxPercent))
}

const liveMetric = "/gc/heap/live:bytes"

// Run keeps GOGC at Percent of the live heap, read every Interval, until
// ctx ends; then it restores the GOGC it found. With GOGC or GOMEMLIMIT set
// in the environment it only waits for ctx.
func Run(ctx context.Context) error {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		<-ctx.Done()
		return nil
	}
	sample := []metrics.Sample{{Name: liveMetric}}
	cur := Percent(live(sample))
	prev := debug.SetGCPercent(cur)
	defer debug.SetGCPercent(prev)
	t := time.NewTicker(Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		// Changed only past a tenth: the target does not hop with every
		// cycle's small differences in live heap.
		if p := Percent(live(sample)); p*10 < cur*9 || p*10 > cur*11 {
			debug.SetGCPercent(p)
			cur = p
		}
	}
}

func live(s []metrics.Sample) uint64 {
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
