package vault

import (
	"context"
	"testing"
	"time"

	"rotor.sh/rotor/internal/proccpu"
	"rotor.sh/rotor/storage"
)

// benchAuditVault opens a vault on a real bbolt file with the background
// sealer off, so the benchmark decides when sealing runs.
func benchAuditVault(b *testing.B) (*Vault, Actor, ResolveRequest) {
	b.Helper()
	v, err := Open(context.Background(), Options{Store: testStore(b), MasterKey: GenerateMasterKey(), AuditSealInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { v.Close(context.Background()) })
	a := bootstrap(b, v)
	if _, err := v.CreateSecret(context.Background(), a, CreateSecretRequest{Name: "TOKEN", Value: PlaintextString("a-typical-api-token-0123456789"), AllowedHosts: []string{"api.example.com"}}); err != nil {
		b.Fatal(err)
	}
	if err := v.SealAudit(context.Background()); err != nil {
		b.Fatal(err)
	}
	req := ResolveRequest{WorkspaceID: a.WorkspaceID, Name: "TOKEN", ActorID: a.KeyID, Host: "api.example.com", Scheme: "https", RequestID: "req_0123456789abcdef"}
	return v, a, req
}

// BenchmarkAuditAccess is the whole audit cost of one proxied secret
// access on bbolt: the cached resolve on the request goroutine, the
// writer's encoding and group commit (flushed every 512 accesses, as the
// writer does under load), and a seal every 1,000 accesses (the sealer's
// share at 1,000 accesses/s). allocs/op counts every goroutine.
func BenchmarkAuditAccess(b *testing.B) {
	v, _, req := benchAuditVault(b)
	ctx := context.Background()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if _, err := v.Resolve(ctx, req); err != nil {
			b.Fatal(err)
		}
		n++
		if n%512 == 0 {
			if err := v.audit.flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
		if n%1000 == 0 {
			if err := v.SealAudit(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := v.audit.flush(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSealAudit is one seal round after 1,000 access rows were
// written through the writer (one second at 1,000 accesses/s): the
// sealer's cost per round: ns/row is wall time, cpu-ns/row the process's
// CPU time during the seal (nothing else runs then). The appends are
// outside the timer.
func BenchmarkSealAudit(b *testing.B) {
	v, _, req := benchAuditVault(b)
	ctx := context.Background()
	const rows = 1000
	b.ReportAllocs()
	var sealing, cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		for range rows {
			if _, err := v.Resolve(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
		if err := v.audit.flush(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start, startCPU := time.Now(), proccpu.Self()
		if err := v.SealAudit(ctx); err != nil {
			b.Fatal(err)
		}
		sealing += time.Since(start)
		cpu += proccpu.Self() - startCPU
	}
	b.ReportMetric(float64(sealing.Nanoseconds())/float64(b.N*rows), "ns/row")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*rows), "cpu-ns/row")
}

// everyHeadHook runs f after every GetAuditHead: an append landing while
// each seal round works.
type everyHeadHook struct {
	*readCounter
	f func()
}

func (h *everyHeadHook) GetAuditHead(ctx context.Context, ws string) (storage.AuditHead, error) {
	head, err := h.readCounter.GetAuditHead(ctx, ws)
	if h.f != nil {
		h.f()
	}
	return head, err
}

// BenchmarkSealAuditUnderLoad is one seal round under steady traffic: 300
// accesses written between rounds and 10 more while each round works, from
// the node's first seal on (as when rotor serve starts under load).
// rows-read/op counts the rows a round read back through ListAuditAsc
// (issue 15: the sealer walked every new row each round; it should read
// none). ns/op includes the 300 accesses.
func BenchmarkSealAuditUnderLoad(b *testing.B) {
	store := &everyHeadHook{readCounter: &readCounter{Store: testStore(b)}}
	v, err := Open(context.Background(), Options{Store: store, MasterKey: GenerateMasterKey(), AuditSealInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { v.Close(context.Background()) })
	a := bootstrap(b, v)
	ctx := context.Background()
	if _, err := v.CreateSecret(ctx, a, CreateSecretRequest{Name: "TOKEN", Value: PlaintextString("a-typical-api-token-0123456789")}); err != nil {
		b.Fatal(err)
	}
	req := ResolveRequest{WorkspaceID: a.WorkspaceID, Name: "TOKEN", ActorID: a.KeyID, Host: "api.example.com", RequestID: "req_0123456789abcdef"}
	resolve := func(n int) error {
		for range n {
			if _, err := v.Resolve(ctx, req); err != nil {
				return err
			}
		}
		return v.audit.flush(ctx)
	}
	store.f = func() {
		if err := resolve(10); err != nil {
			b.Error(err)
		}
	}
	b.Cleanup(func() { store.f = nil }) // before Close's last seal
	if err := resolve(300); err != nil {
		b.Fatal(err)
	}
	if err := v.SealAudit(ctx); err != nil {
		b.Fatal(err)
	}
	store.reads.Store(0)
	b.ReportAllocs()
	for b.Loop() {
		if err := resolve(300); err != nil {
			b.Fatal(err)
		}
		if err := v.SealAudit(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(store.reads.Load())/float64(b.N), "rows-read/op")
}
