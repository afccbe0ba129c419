package proxy

import (
	"context"
	"testing"

	"rotor.sh/rotor/internal/proccpu"
	"rotor.sh/rotor/vault/vaulttest"
)

// BenchmarkResolveRequestSecrets is the resolving part of bench/proxyload's
// GET alone: one request's resolveName calls (TOKEN twice, USER once: two
// vault resolves, two access rows) and its scrubber look-up, from
// goroutines on every core as under load, where the locks and counters
// every request shares cost most. cpu-ns/op is the process's CPU per
// request, the audit writer and the in-process store included. Run it with
// a fixed -benchtime (100000x): past the audit backlog bound resolves are
// refused.
func BenchmarkResolveRequestSecrets(b *testing.B) {
	ve, p := benchProxy(b, "TOKEN", "tok_live_5f3a9c2e7d1b4a60", "USER", "acct-0042")
	b.ReportAllocs()
	cpu0 := proccpu.Self()
	b.RunParallel(func(pb *testing.PB) {
		st := new(reqState)
		for pb.Next() {
			*st = reqState{p: p, ctx: context.Background(), id: "prx_bench", actor: ve.Operator, host: "upstream.test", scheme: "http"}
			st.resolved, st.names = st.resolvedBuf[:0], st.namesBuf[:0]
			for _, name := range [...]string{"TOKEN", "TOKEN", "USER"} {
				if _, err := st.resolveName(name); err != nil {
					b.Error(err)
					return
				}
			}
			if sc, _, err := st.scrubberNow(); err != nil || sc == nil {
				b.Errorf("scrubber %v: %v", sc, err)
				return
			}
		}
	})
	b.StopTimer()
	if err := ve.Vault.FlushAudit(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(proccpu.Self()-cpu0)/float64(b.N), "cpu-ns/op")
}

// benchProxy is a proxy on a fresh test vault holding the given secrets
// (name, value pairs), closed when the benchmark ends.
func benchProxy(b *testing.B, secrets ...string) (*vaulttest.Env, *Proxy) {
	ve := vaulttest.New(b)
	for i := 0; i+1 < len(secrets); i += 2 {
		ve.Secret(b, secrets[i], secrets[i+1])
	}
	p, err := New(Options{Vault: ve.Vault, Logger: ve.Logger, Registerer: ve.Registry})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.CloseIdleConnections)
	return ve, p
}
