package vault

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

func BenchmarkSeal(b *testing.B) {
	_, keys := testKeys(b, "kek_a")
	for _, size := range []int{32, 1024, 64 << 10} {
		pt := make([]byte, size)
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := sealValue(keys[0], binding{"ws", "NAME", 1}, pt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	lookup, keys := testKeys(b, "kek_a")
	for _, size := range []int{32, 1024, 64 << 10} {
		sealed, _ := sealValue(keys[0], binding{"ws", "NAME", 1}, make([]byte, size))
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := openValue(lookup, binding{"ws", "NAME", 1}, sealed); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkResolve: cached is the proxy's hot path (no storage call, no
// decryption, one queued audit event); uncached reads bbolt and opens the
// envelope every time.
func BenchmarkResolve(b *testing.B) {
	v, _ := testVault(b)
	a := bootstrap(b, v)
	ctx := context.Background()
	if _, err := v.CreateSecret(ctx, a, CreateSecretRequest{Name: "TOKEN", Value: PlaintextString("a-typical-api-token-0123456789")}); err != nil {
		b.Fatal(err)
	}
	req := ResolveRequest{WorkspaceID: a.WorkspaceID, Name: "TOKEN", ActorID: a.KeyID, Host: "api.example.com"}
	// A cached resolve queues its access row far faster than storage
	// writes rows, so an unbounded loop fills the backlog (500,000 rows)
	// and is refused, fail closed, within a second; every resolveFlushEvery
	// resolves wait for the writer, which charges each its share of the
	// write as a steady load would.
	const resolveFlushEvery = 50_000
	var n atomic.Int64
	resolve := func() error {
		if _, err := v.Resolve(ctx, req); err != nil {
			return err
		}
		if n.Add(1)%resolveFlushEvery == 0 {
			return v.FlushAudit(ctx)
		}
		return nil
	}
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := resolve(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := resolve(); err != nil {
					b.Error(err) // not Fatal: this is not the benchmark's goroutine
					return
				}
			}
		})
	})
	b.Run("uncached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v.Invalidate(a.WorkspaceID, "TOKEN")
			if _, err := v.Resolve(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}
