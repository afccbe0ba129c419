package vault

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"rotor.sh/rotor/internal/proccpu"
	"rotor.sh/rotor/plugins"
	"rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage"
)

// pidCPU is another process's CPU time (proccpu.Of); skips without /proc.
func pidCPU(b *testing.B, pid int) time.Duration {
	d, err := proccpu.Of(pid)
	if err != nil {
		b.Skip(err)
	}
	return d
}

// benchRequestIDs are distinct request ids shaped as the proxy's.
func benchRequestIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "prx_" + strconv.FormatUint(0x0123456789abcdef+uint64(i)*7919, 16)
	}
	return ids
}

// BenchmarkAuditRowsPlugin is the access rows of the proxy's resolving
// GET as rotor serve writes them: two secrets per request, each request
// its own request id, through the storage plugin (bbolt) in batches of
// auditMaxBatch rows. One op is one row. host-cpu-ns/row is this
// process's CPU (the request path's Resolve, the writer's encoding and
// MAC, the plugin client's encoding and send); plugin-cpu-ns/row the
// plugin's.
func BenchmarkAuditRowsPlugin(b *testing.B) {
	ctx := context.Background()
	s, err := plugins.Launch(ctx, plugins.LaunchOptions{
		Path: os.Args[0], Env: []string{"ROTOR_TEST_AS_PLUGIN=1"},
		Config: &proto.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(b.TempDir(), "rotor.db")},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	v, err := Open(ctx, Options{Store: s, MasterKey: GenerateMasterKey(), AuditSealInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { v.Close(context.Background()) })
	a := bootstrap(b, v)
	for _, name := range []string{"TOKEN", "USER"} {
		if _, err := v.CreateSecret(ctx, a, CreateSecretRequest{Name: name, Value: PlaintextString("a-typical-api-token-0123456789"), AllowedHosts: []string{"api.example.com"}}); err != nil {
			b.Fatal(err)
		}
	}
	ids := benchRequestIDs(auditMaxBatch)
	req := ResolveRequest{WorkspaceID: a.WorkspaceID, ActorID: a.KeyID, Host: "api.example.com", Scheme: "https"}
	names := [2]string{"TOKEN", "USER"}
	if err := v.audit.flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	pid := s.Pid()
	host0, plugin0 := proccpu.Self(), pidCPU(b, pid)
	n := 0
	for b.Loop() {
		req.Name, req.RequestID = names[n%2], ids[(n/2)%len(ids)]
		if _, err := v.Resolve(ctx, req); err != nil {
			b.Fatal(err)
		}
		n++
		if n%auditMaxBatch == 0 {
			if err := v.audit.flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := v.audit.flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64((proccpu.Self()-host0).Nanoseconds())/float64(n), "host-cpu-ns/row")
	b.ReportMetric(float64((pidCPU(b, pid)-plugin0).Nanoseconds())/float64(n), "plugin-cpu-ns/row")
}

// discardAppender takes every batch and writes nothing.
type discardAppender struct{}

func (discardAppender) AppendAudit(_ context.Context, evs []storage.AuditEvent) ([]storage.AuditAppended, error) {
	return nil, nil
}

func (discardAppender) RetryAppendAudit(ctx context.Context, evs []storage.AuditEvent) ([]storage.AuditAppended, error) {
	return nil, nil
}

// BenchmarkAuditWriterRows is the writer's own work per access row
// (encoding the record, its nonce and MAC), rows as the proxy's GET queues
// them (two per request id), in batches of auditMaxBatch, to a store that
// discards them. One op is one row; cpu-ns/row is the process's CPU
// (the queueing goroutine's and the writer's).
func BenchmarkAuditWriterRows(b *testing.B) {
	w := newAuditWriter(discardAppender{}, slog.New(slog.DiscardHandler), newMetrics(nil), 0, newRowSigner(make([]byte, 32)), nil)
	b.Cleanup(func() { w.close(context.Background()) })
	ids := benchRequestIDs(auditMaxBatch)
	at := time.Now().UTC()
	ctx := context.Background()
	b.ReportAllocs()
	n := 0
	cpu0 := proccpu.Self()
	for b.Loop() {
		rec := accessRecord{at: at, ws: "ws_0123456789abcdef", actor: "key_0123456789abcdef", eventType: EventSecretAccessed,
			name: [2]string{"TOKEN", "USER"}[n%2], host: "api.example.com", requestID: ids[(n/2)%len(ids)], version: 3, hasVersion: true}
		if err := w.record(ctx, &rec); err != nil {
			b.Fatal(err)
		}
		n++
		if n%auditMaxBatch == 0 {
			if err := w.flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := w.flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64((proccpu.Self()-cpu0).Nanoseconds())/float64(n), "cpu-ns/row")
}
