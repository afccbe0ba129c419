package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/postgres"
	"rotor.sh/rotor/storage/postgres/pgtest"
	"rotor.sh/rotor/storage/storagetest"
)

// BenchmarkAppendAudit: the group committer's write on PostgreSQL, per
// event, in batches of 64 and 512 (its maximum batch), with row MACs as the
// vault sends them.
func BenchmarkAppendAudit(b *testing.B) {
	dsn, _ := pgtest.Schema(b)
	s, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for _, n := range []int{64, 512} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			batch := make([]storage.AuditEvent, n)
			for i := range batch {
				batch[i] = storage.AuditEvent{OccurredAt: time.Now(), WorkspaceID: "ws_0123456789abcdef", ActorID: "key_0123456789abcdef",
					EventType: "secret.accessed", ResourceType: "secret", ResourceID: "NOTIFY_TOKEN",
					Input: []byte(`{"host":"api.example.com","request_id":"prx_0123456789abcdef"}`), Output: []byte(`{"version":3}`),
					Nonce: make([]byte, 16), MAC: make([]byte, 32)}
			}
			b.ReportAllocs()
			events := 0
			for b.Loop() {
				if _, err := s.AppendAudit(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
				events += n
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(events), "ns/event")
		})
	}
}

// BenchmarkRetryAppendAudit: storagetest.BenchRetryAppendAudit on PostgreSQL.
func BenchmarkRetryAppendAudit(b *testing.B) {
	dsn, _ := pgtest.Schema(b)
	s, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storagetest.BenchRetryAppendAudit(b, s)
}
