package bolt_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/bolt"
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
