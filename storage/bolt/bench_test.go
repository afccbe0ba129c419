package bolt_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/bolt"
	"rotor.sh/rotor/storage/storagetest"
)

// BenchmarkAppendAudit: the group committer's write, per event, in batches
// of 512 (its maximum batch).
func BenchmarkAppendAudit(b *testing.B) {
	s, err := bolt.Open(filepath.Join(b.TempDir(), "rotor.db"), bolt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	batch := make([]storage.AuditEvent, 512)
	for i := range batch {
		batch[i] = storage.AuditEvent{OccurredAt: time.Now(), WorkspaceID: "ws_0123456789abcdef", ActorID: "key_0123456789abcdef",
			EventType: "secret.accessed", ResourceType: "secret", ResourceID: "NOTIFY_TOKEN",
			Input: []byte(`{"host":"api.example.com","request_id":"prx_0123456789abcdef"}`), Output: []byte(`{"version":3}`)}
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if _, err := s.AppendAudit(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
		n += len(batch)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/event")
}

// BenchmarkPruneAudit: one retention batch on bbolt's single writer, per
// row: 1,000 rows appended (outside the timer) as the writer does, then
// pruned through a row in the middle of a segment.
func BenchmarkPruneAudit(b *testing.B) {
	s, err := bolt.Open(filepath.Join(b.TempDir(), "rotor.db"), bolt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	batch := make([]storage.AuditEvent, 500)
	for i := range batch {
		batch[i] = storage.AuditEvent{OccurredAt: time.Now(), WorkspaceID: "ws_0123456789abcdef", ActorID: "key_0123456789abcdef",
			EventType: "secret.accessed", ResourceType: "secret", ResourceID: "NOTIFY_TOKEN",
			Input: []byte(`{"host":"api.example.com","request_id":"prx_0123456789abcdef"}`), Output: []byte(`{"version":3}`)}
	}
	b.ReportAllocs()
	rows, pruned := 0, int64(0)
	for b.Loop() {
		b.StopTimer()
		var last int64
		for range 2 {
			heads, err := s.AppendAudit(ctx, batch)
			if err != nil {
				b.Fatal(err)
			}
			last = heads[0].Head.LastID
		}
		through := last - 30 // inside the last segment
		b.StartTimer()
		n, err := s.PruneAudit(ctx, storage.PruneAuditArgs{Marker: storage.AuditRetention{WorkspaceID: "ws_0123456789abcdef", ThroughID: through, Rows: pruned + 1, PrunedAt: time.Now()}})
		if err != nil || n == 0 {
			b.Fatal(n, err)
		}
		pruned = through
		rows += n
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(rows), "ns/row")
}

// BenchmarkListAuditAsc: reading rows back in id order (what `rotor audit
// verify` and the background check do), 1,000 rows a call from 10,240 rows
// with row MACs, per row.
func BenchmarkListAuditAsc(b *testing.B) {
	s, err := bolt.Open(filepath.Join(b.TempDir(), "rotor.db"), bolt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	batch := make([]storage.AuditEvent, 512)
	for i := range batch {
		batch[i] = storage.AuditEvent{OccurredAt: time.Now(), WorkspaceID: "ws_0123456789abcdef", ActorID: "key_0123456789abcdef",
			EventType: "secret.accessed", ResourceType: "secret", ResourceID: "NOTIFY_TOKEN",
			Input: []byte(`{"host":"api.example.com","request_id":"prx_0123456789abcdef"}`), Output: []byte(`{"version":3}`),
			Nonce: make([]byte, 16), MAC: make([]byte, 32)}
	}
	for range 20 {
		if _, err := s.AppendAudit(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	rows := 0
	after := int64(0)
	for b.Loop() {
		evs, err := s.ListAuditAsc(ctx, storage.AuditRange{WorkspaceID: "ws_0123456789abcdef", AfterID: after, Limit: 1000})
		if err != nil {
			b.Fatal(err)
		}
		rows += len(evs)
		if after += 1000; after > 9000 {
			after = 0
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(rows), "ns/row")
}

// BenchmarkRetryAppendAudit: storagetest.BenchRetryAppendAudit on bbolt.
func BenchmarkRetryAppendAudit(b *testing.B) {
	s, err := bolt.Open(filepath.Join(b.TempDir(), "rotor.db"), bolt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storagetest.BenchRetryAppendAudit(b, s)
}
