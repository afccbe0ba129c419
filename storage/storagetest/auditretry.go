package storagetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
)

// testAuditRetry: RetryAppendAudit of a batch whose AppendAudit committed
// (its reply lost) writes each row once: the rows already stored are
// skipped even with rows of another writer after them, a retry that
// carries new rows after the stored ones appends only those, and rows
// never stored (or without a nonce, or whose nonce is stored with another
// MAC) are appended as AppendAudit would.
func testAuditRetry(t *testing.T, s storage.Store) {
	for _, ws := range []string{"ws_a", "ws_b", "ws_c"} {
		mkWorkspace(t, s, ws)
	}
	nonce := byte(0)
	signed := func(ws, res string) storage.AuditEvent {
		nonce++
		e := ev(ws, "secret.accessed", res)
		e.Nonce = bytes.Repeat([]byte{nonce}, 16)
		e.MAC = bytes.Repeat([]byte{^nonce}, 32)
		return e
	}
	names := func(ws string) []string {
		t.Helper()
		evs, err := s.ListAuditAsc(ctx(), storage.AuditRange{WorkspaceID: ws, Limit: 100})
		must(t, err)
		var out []string
		for i, e := range evs {
			// The chain runs through every row: nothing skipped broke it.
			if i > 0 && !bytes.Equal(storage.NextChain(evs[i-1].Chain, e), e.Chain) {
				t.Fatalf("%s: row %d does not chain onto row %d", ws, e.ID, evs[i-1].ID)
			}
			out = append(out, e.ResourceID)
		}
		return out
	}
	wantRows := func(ws string, want ...string) {
		t.Helper()
		if got := names(ws); !slices.Equal(got, want) {
			t.Fatalf("%s rows %v, want %v", ws, got, want)
		}
	}
	batch := []storage.AuditEvent{signed("ws_a", "a1"), signed("ws_b", "b1"), signed("ws_a", "a2"), signed("ws_a", "a3"), signed("ws_b", "b2")}
	appendAudit(t, s, slices.Clone(batch))
	// Another node appends to ws_a before the retry lands.
	appendAudit(t, s, []storage.AuditEvent{signed("ws_a", "other")})
	heads := map[string]storage.AuditHead{}
	for _, ws := range []string{"ws_a", "ws_b"} {
		h, err := s.GetAuditHead(ctx(), ws)
		must(t, err)
		heads[ws] = h
	}

	// The retry of the committed batch writes nothing and reports nothing.
	got, err := s.RetryAppendAudit(ctx(), slices.Clone(batch))
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("retry of a stored batch reported %+v", got)
	}
	wantRows("ws_a", "a1", "a2", "a3", "other")
	wantRows("ws_b", "b1", "b2")
	for ws, h := range heads {
		now, err := s.GetAuditHead(ctx(), ws)
		must(t, err)
		if now.LastID != h.LastID || !bytes.Equal(now.Chain, h.Chain) {
			t.Fatalf("%s: head moved from %d to %d on a retry that wrote nothing", ws, h.LastID, now.LastID)
		}
	}

	// A retry carrying rows queued since: only those are appended, and
	// reported from the head they were chained onto.
	more := append(slices.Clone(batch), signed("ws_a", "a4"), signed("ws_c", "c1"))
	got, err = s.RetryAppendAudit(ctx(), more)
	must(t, err)
	if len(got) != 2 {
		t.Fatalf("retry with new rows reported %+v, want ws_a and ws_c", got)
	}
	for _, a := range got {
		now, err := s.GetAuditHead(ctx(), a.WorkspaceID)
		must(t, err)
		want := storage.AuditAppended{WorkspaceID: a.WorkspaceID, Prev: heads[a.WorkspaceID], Head: now, Rows: 1}
		if fmt.Sprint(a) != fmt.Sprint(want) {
			t.Fatalf("retry reported %+v, want %+v", a, want)
		}
	}
	wantRows("ws_a", "a1", "a2", "a3", "other", "a4")
	wantRows("ws_b", "b1", "b2")
	wantRows("ws_c", "c1")

	// Rows never stored are appended in full; so are rows without a nonce
	// (nothing identifies them as stored).
	got, err = s.RetryAppendAudit(ctx(), []storage.AuditEvent{signed("ws_b", "b3"), ev("ws_b", "secret.accessed", "plain")})
	must(t, err)
	if len(got) != 1 || got[0].Rows != 2 {
		t.Fatalf("retry of unstored rows reported %+v", got)
	}
	got, err = s.RetryAppendAudit(ctx(), []storage.AuditEvent{ev("ws_b", "secret.accessed", "plain")})
	must(t, err)
	if len(got) != 1 || got[0].Rows != 1 {
		t.Fatalf("retry of a row without a nonce reported %+v", got)
	}
	wantRows("ws_b", "b1", "b2", "b3", "plain", "plain")

	// A stored row with the first row's nonce but another MAC (planted
	// with a predicted nonce) is not the row: it is appended.
	planted := signed("ws_c", "planted")
	appendAudit(t, s, []storage.AuditEvent{planted})
	genuine := planted
	genuine.ResourceID, genuine.MAC = "genuine", bytes.Repeat([]byte{0xaa}, 32)
	got, err = s.RetryAppendAudit(ctx(), []storage.AuditEvent{genuine})
	must(t, err)
	if len(got) != 1 || got[0].Rows != 1 {
		t.Fatalf("retry over a planted nonce reported %+v", got)
	}
	wantRows("ws_c", "c1", "planted", "genuine")
}

// BenchRetryAppendAudit measures what a retry costs over a workspace of
// storage.AuditRetryWindow rows, per batch of 512 signed access rows:
// "append" is AppendAudit (the healthy path, unchanged), "retry-miss" a
// retry whose rows were never stored (the whole window is scanned, then
// the rows appended: a retry after a plain failure), "retry-hit" a retry
// of a batch that was stored (its rows found near the head and skipped).
func BenchRetryAppendAudit(b *testing.B, s storage.Store) {
	const ws, n = "ws_0123456789abcdef", 512
	var seq uint64
	batch := func() []storage.AuditEvent {
		evs := make([]storage.AuditEvent, n)
		for i := range evs {
			seq++
			nonce := binary.BigEndian.AppendUint64(bytes.Repeat([]byte{7}, 8), seq)
			evs[i] = storage.AuditEvent{OccurredAt: time.Now(), WorkspaceID: ws, ActorID: "key_0123456789abcdef",
				EventType: "secret.accessed", ResourceType: "secret", ResourceID: "NOTIFY_TOKEN",
				Input: []byte(`{"host":"api.example.com","request_id":"prx_0123456789abcdef"}`), Output: []byte(`{"version":3}`),
				Nonce: nonce, MAC: bytes.Repeat(nonce[8:], 4)}
		}
		return evs
	}
	c := context.Background()
	for range storage.AuditRetryWindow / n {
		if _, err := s.AppendAudit(c, batch()); err != nil {
			b.Fatal(err)
		}
	}
	run := func(name string, fn func(evs []storage.AuditEvent) ([]storage.AuditAppended, error), stored bool) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				evs := batch()
				if stored {
					if _, err := s.AppendAudit(c, evs); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				if _, err := fn(evs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	app := func(evs []storage.AuditEvent) ([]storage.AuditAppended, error) { return s.AppendAudit(c, evs) }
	retry := func(evs []storage.AuditEvent) ([]storage.AuditAppended, error) { return s.RetryAppendAudit(c, evs) }
	run("append", app, false)
	run("retry-miss", retry, false)
	run("retry-hit", retry, true)
}
