package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"rotor.sh/rotor/storage"
)

func sampleEvent(id int64) storage.AuditEvent {
	return storage.AuditEvent{ID: id, OccurredAt: time.Date(2026, 11, 29, 23, 1, 2, 345678901, time.UTC), WorkspaceID: "ws_1", ActorID: "key_1",
		EventType: "secret.accessed", ResourceType: "secret", ResourceID: "TOKEN",
		Input: []byte(`{"host":"api.example.com","request_id":"prx_1"}`), Output: []byte(`{"version":3}`),
		Chain: bytes.Repeat([]byte{7}, 32), Nonce: []byte{1, 2, 3}, MAC: bytes.Repeat([]byte{9}, 32)}
}

// v1Segment and jsonSegment build one segment of evs in each format.
func v1Segment(evs []storage.AuditEvent) []byte {
	seg := []byte{segMarker, segV1}
	for i := range evs {
		rec := appendRecordV1(nil, &evs[i])
		seg = append(binary.AppendUvarint(seg, uint64(len(rec))), rec...)
	}
	return seg
}

func jsonSegment(evs []storage.AuditEvent) []byte {
	var seg []byte
	for i := range evs {
		rec := encodeAudit(nil, &evs[i])
		seg = append(binary.AppendUvarint(seg, uint64(len(rec))), rec...)
	}
	return seg
}

// v2Segment builds a v2 segment of evs as appendAuditHeads does, checking
// that plan sized it exactly when the ids run on from the first and the
// chain values are 32 bytes.
func v2Segment(t testing.TB, evs []storage.AuditEvent) []byte {
	var enc segEncoderV2
	ptrs := make([]*storage.AuditEvent, len(evs))
	exact := true
	for i := range evs {
		ptrs[i] = &evs[i]
		exact = exact && evs[i].ID == evs[0].ID+int64(i) && len(evs[i].Chain) == 32
	}
	size := enc.plan(ptrs, evs[0].ID)
	buf := enc.header(make([]byte, 0, size))
	for i := range evs {
		buf = appendFrameV2(buf, &evs[i], &enc.refs[i])
	}
	if exact && len(buf) != size {
		t.Fatalf("v2 segment of %d bytes, planned %d", len(buf), size)
	}
	return buf
}

// TestSegmentFormatsDecodeAlike: a row reads back the same from a v2, a v1
// and a JSON segment, with the same chain value, and the id filter skips
// rows.
func TestSegmentFormatsDecodeAlike(t *testing.T) {
	evs := []storage.AuditEvent{sampleEvent(5), sampleEvent(6), sampleEvent(7)}
	evs[1].Nonce, evs[1].MAC, evs[1].Output = nil, nil, nil // a row from before row MACs
	evs[2].ResourceID, evs[2].OccurredAt = "OTHER", time.Unix(-5, 1).UTC()
	for name, seg := range map[string][]byte{"v2": v2Segment(t, evs), "v1": v1Segment(evs), "json": jsonSegment(evs)} {
		got, err := decodeSegment(seg, 0)
		if err != nil || len(got) != len(evs) {
			t.Fatalf("%s: %d rows, %v", name, len(got), err)
		}
		for i := range evs {
			if !got[i].OccurredAt.Equal(evs[i].OccurredAt) || got[i].ID != evs[i].ID || got[i].ResourceID != evs[i].ResourceID ||
				!bytes.Equal(got[i].Input, evs[i].Input) || !bytes.Equal(got[i].MAC, evs[i].MAC) ||
				!bytes.Equal(storage.NextChain(nil, got[i]), storage.NextChain(nil, evs[i])) {
				t.Fatalf("%s: row %d = %+v, want %+v", name, i, got[i], evs[i])
			}
		}
		if got, err := decodeSegment(seg, 6); err != nil || len(got) != 1 || got[0].ID != 7 {
			t.Fatalf("%s: after 6: %+v, %v", name, got, err)
		}
		if n, err := segmentRecords(seg); n != 3 || err != nil {
			t.Fatalf("%s: %d records, %v", name, n, err)
		}
	}
	// Decoded byte fields are copies, capped: appending to one does not
	// touch the next.
	for _, seg := range [][]byte{v1Segment(evs[:2]), v2Segment(t, evs[:2])} {
		got, _ := decodeSegment(seg, 0)
		in := got[0].Input
		_ = append(in, 'x')
		if !bytes.Equal(got[0].Output, evs[0].Output) || !bytes.Equal(got[1].Input, evs[1].Input) {
			t.Fatal("appending to Input changed another field")
		}
	}
	// A v2 dictionary holds a row's repeated values once: the second of
	// two rows that differ only in id, time and MAC costs their bytes alone.
	two := []storage.AuditEvent{sampleEvent(1), sampleEvent(2)}
	two[1].MAC = bytes.Repeat([]byte{3}, 32)
	if one, both := len(v2Segment(t, two[:1])), len(v2Segment(t, two)); both-one > 100 { // id, time, refs, chain, nonce and MAC: 89
		t.Fatalf("a repeated row took %d bytes", both-one)
	}
	if _, err := decodeSegment([]byte{segMarker, 9, 1, 1}, 0); !errors.Is(err, errCorruptSegment) {
		t.Fatalf("unknown format: %v", err)
	}
}

// FuzzDecodeSegment: any bytes decode to rows or an error, never a panic;
// a v1 segment of fuzzed rows decodes to those rows.
func FuzzDecodeSegment(f *testing.F) {
	f.Add(v1Segment([]storage.AuditEvent{sampleEvent(1)}), int64(1), "ws", "in", int64(0))
	f.Add(jsonSegment([]storage.AuditEvent{sampleEvent(1), sampleEvent(2)}), int64(1<<40), "", "", int64(-1))
	f.Add([]byte{0, 1, 5, 1, 2, 3}, int64(0), "\xff", `{"a":"<"}`, int64(1<<40))
	f.Add(v2Segment(f, []storage.AuditEvent{sampleEvent(1), sampleEvent(2)}), int64(3), "ws", "", int64(5))
	f.Add([]byte{0, 2, 1, 1, 'a', 16, 1, 2, 3, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0}, int64(1), "", "x", int64(7))
	f.Fuzz(func(t *testing.T, raw []byte, id int64, ws, in string, sec int64) {
		evs, err := decodeSegment(raw, 0)
		if n, cerr := segmentRecords(raw); err == nil && (cerr != nil || n != len(evs)) {
			t.Fatalf("decoded %d rows, counted %d (%v)", len(evs), n, cerr)
		}
		if id < 0 {
			return
		}
		ev := sampleEvent(id)
		ev.WorkspaceID, ev.Input, ev.OccurredAt = ws, []byte(in), time.Unix(sec%(1<<40), id%1e9).UTC()
		got, err := decodeSegment(v1Segment([]storage.AuditEvent{ev, ev}), 0)
		if err != nil || len(got) != 2 {
			t.Fatalf("round trip: %d rows, %v", len(got), err)
		}
		if !got[1].OccurredAt.Equal(ev.OccurredAt) {
			t.Fatalf("time %v, want %v", got[1].OccurredAt, ev.OccurredAt)
		}
		got[1].OccurredAt = ev.OccurredAt
		if len(ev.Input) == 0 {
			ev.Input = nil
		}
		if !reflect.DeepEqual(got[1], ev) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got[1], ev)
		}
		// v2: rows sharing some values and not others, ids in a run.
		ev.Chain = bytes.Repeat([]byte{byte(id)}, 32)
		ev2 := ev
		ev2.ID, ev2.ResourceID, ev2.Input, ev2.ActorID = ev.ID+1, in, nil, ws+ws
		ev3 := ev
		ev3.ID = ev.ID + 2
		rows := []storage.AuditEvent{ev, ev2, ev3}
		if id >= math.MaxInt64-2 {
			return
		}
		got, err = decodeSegment(v2Segment(t, rows), 0)
		if err != nil || len(got) != 3 {
			t.Fatalf("v2 round trip: %d rows, %v", len(got), err)
		}
		for i := range rows {
			if !got[i].OccurredAt.Equal(rows[i].OccurredAt) {
				t.Fatalf("v2 row %d: time %v, want %v", i, got[i].OccurredAt, rows[i].OccurredAt)
			}
			got[i].OccurredAt = rows[i].OccurredAt
			if len(rows[i].Input) == 0 {
				rows[i].Input = nil
			}
			if !reflect.DeepEqual(got[i], rows[i]) {
				t.Fatalf("v2 round trip, row %d:\n got %+v\nwant %+v", i, got[i], rows[i])
			}
		}
	})
}

// TestOldSegmentsStayReadable: a database whose rows are JSON or v1
// segments (as an older Rotor wrote them) gets v2 segments appended after
// them; all list, chain and prune alike.
func TestOldSegmentsStayReadable(t *testing.T) {
	for _, old := range []byte{0, segV1} {
		t.Run(fmt.Sprintf("format=%d", old), func(t *testing.T) { testOldSegmentsStayReadable(t, old) })
	}
}

func testOldSegmentsStayReadable(t *testing.T, old byte) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "rotor.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	batch := func(n int) []storage.AuditEvent {
		evs := make([]storage.AuditEvent, n)
		for i := range evs {
			evs[i] = sampleEvent(0)
			evs[i].Chain = nil
		}
		return evs
	}
	if _, err := s.AppendAudit(ctx, batch(10)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := RewriteAudit(path, "ws_1", map[byte]string{0: "json", segV1: "v1"}[old], func(evs []storage.AuditEvent) ([]storage.AuditEvent, *storage.AuditHead) { return evs, nil }); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(path, Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.AppendAudit(ctx, batch(10)); err != nil {
		t.Fatal(err)
	}
	var formats []byte
	if err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketAudit).Bucket([]byte("ws_1")).ForEach(func(_, v []byte) error {
			_, f, err := segmentBody(v)
			formats = append(formats, f)
			return err
		})
	}); err != nil {
		t.Fatal(err)
	}
	if len(formats) != 11 || formats[0] != old || formats[10] != segV2 {
		t.Fatalf("segment formats %v, want 10 of format %d and one v2", formats, old)
	}
	checkChain := func(after int64, want int) {
		t.Helper()
		rows, err := s.ListAuditAsc(ctx, storage.AuditRange{WorkspaceID: "ws_1", AfterID: after, Limit: 100})
		if err != nil || len(rows) != want {
			t.Fatalf("%d rows after %d, %v; want %d", len(rows), after, err, want)
		}
		for i := 1; i < len(rows); i++ {
			if !bytes.Equal(rows[i].Chain, storage.NextChain(rows[i-1].Chain, rows[i])) {
				t.Fatalf("row %d does not chain", rows[i].ID)
			}
		}
		h, _ := s.GetAuditHead(ctx, "ws_1")
		if last := rows[len(rows)-1]; h.LastID != last.ID || !bytes.Equal(h.Chain, last.Chain) {
			t.Fatalf("head %d, last row %d", h.LastID, last.ID)
		}
	}
	checkChain(0, 20)
	page, err := s.ListAudit(ctx, storage.AuditQuery{WorkspaceID: "ws_1", Limit: 15})
	if err != nil || len(page.Events) != 15 || page.Events[0].ID != 20 || page.Events[14].ID != 6 {
		t.Fatalf("ListAudit: %d rows, %v", len(page.Events), err)
	}
	// Prune through the middle of the v2 segment: its later rows stay v2
	// (re-encoded under a dictionary of their own) and still chain.
	if n, err := s.PruneAudit(ctx, storage.PruneAuditArgs{Marker: storage.AuditRetention{WorkspaceID: "ws_1", ThroughID: 14}}); err != nil || n != 14 {
		t.Fatalf("pruned %d, %v", n, err)
	}
	checkChain(14, 6)
}

// TestPruneV2DropsValues: pruning through the middle of a v2 segment
// leaves none of the pruned rows' values in the database, though the
// segment's dictionary held them (it once kept the old header); the kept
// rows come back unchanged, chain and MACs included.
func TestPruneV2DropsValues(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "rotor.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var evs []storage.AuditEvent
	for i := range 10 {
		ev := sampleEvent(0)
		ev.ResourceID = fmt.Sprintf("PRUNED_NAME_%02d", i+1)
		ev.Input = []byte(fmt.Sprintf(`{"host":"pruned-host-%d.example","request_id":"prx_%d"}`, i+1, i+1))
		ev.Chain = nil
		evs = append(evs, ev)
	}
	if _, err := s.AppendAudit(ctx, evs); err != nil {
		t.Fatal(err)
	}
	before, err := s.ListAuditAsc(ctx, storage.AuditRange{WorkspaceID: "ws_1", AfterID: 8, Limit: 10})
	if err != nil || len(before) != 2 {
		t.Fatalf("%d rows, %v", len(before), err)
	}
	if n, err := s.PruneAudit(ctx, storage.PruneAuditArgs{Marker: storage.AuditRetention{WorkspaceID: "ws_1", ThroughID: 8}}); err != nil || n != 8 {
		t.Fatalf("pruned %d, %v", n, err)
	}
	var live [][]byte
	if err := s.view(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketAudit).Bucket([]byte("ws_1")).ForEach(func(_, v []byte) error {
			live = append(live, bytes.Clone(v))
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if len(live) != 1 || live[0][0] != segMarker || live[0][1] != segV2 {
		t.Fatalf("after the prune: %d segments, want one v2", len(live))
	}
	for i := 1; i <= 10; i++ {
		name, host := fmt.Sprintf("PRUNED_NAME_%02d", i), fmt.Sprintf("pruned-host-%d.example", i)
		in := bytes.Contains(live[0], []byte(name)) || bytes.Contains(live[0], []byte(host))
		if in != (i > 8) {
			t.Errorf("row %d (pruned: %v): its values in the live segment: %v", i, i <= 8, in)
		}
	}
	after, err := s.ListAuditAsc(ctx, storage.AuditRange{WorkspaceID: "ws_1", Limit: 10})
	if err != nil || len(after) != 2 {
		t.Fatalf("%d rows after the prune, %v", len(after), err)
	}
	for i := range after {
		if !reflect.DeepEqual(after[i], before[i]) {
			t.Fatalf("row %d changed by the prune:\n%+v\n%+v", after[i].ID, after[i], before[i])
		}
	}
}

// TestChainHeadAfterRollback: the head kept in memory is only trusted while
// it is what the database holds; an append rolled back leaves it stale and
// the next append chains onto the stored head.
func TestChainHeadAfterRollback(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "rotor.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ev := sampleEvent(0)
	ev.Chain = nil
	if _, err := s.AppendAudit(ctx, []storage.AuditEvent{ev, ev}); err != nil {
		t.Fatal(err)
	}
	before, _ := s.GetAuditHead(ctx, "ws_1")
	boom := errors.New("boom")
	if err := s.update(ctx, func(tx *bbolt.Tx) error {
		if _, err := s.appendAuditHeads(tx, []storage.AuditEvent{ev}, false); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	got, err := s.AppendAudit(ctx, []storage.AuditEvent{ev})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Prev.LastID != before.LastID || !bytes.Equal(got[0].Prev.Chain, before.Chain) {
		t.Fatalf("appended after %d/%x, the stored head is %d/%x", got[0].Prev.LastID, got[0].Prev.Chain, before.LastID, before.Chain)
	}
	rows, _ := s.ListAuditAsc(ctx, storage.AuditRange{WorkspaceID: "ws_1", Limit: 10})
	if len(rows) != 3 || !bytes.Equal(rows[2].Chain, storage.NextChain(rows[1].Chain, rows[2])) {
		t.Fatalf("%d rows, the last does not chain", len(rows))
	}
}

// TestSchemaVersionRaised: opening a file of schema 1 (JSON segments only)
// or 2 (v1 segments too) raises it to 3, so a Rotor that cannot read v2
// segments refuses the file instead of failing on its first audit read; a
// newer file is refused.
func TestSchemaVersionRaised(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rotor.db")
	setSchema := func(v uint64) {
		t.Helper()
		db, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, be64(v)) }); err != nil {
			t.Fatal(err)
		}
	}
	schema := func(s *Store) (v uint64) {
		s.db.View(func(tx *bbolt.Tx) error {
			v = binary.BigEndian.Uint64(tx.Bucket(bucketMeta).Get(keySchema))
			return nil
		})
		return v
	}
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	setSchema(1)
	if s, err = Open(path, Options{}); err != nil {
		t.Fatal(err)
	}
	if v := schema(s); v != schemaVersion {
		t.Fatalf("schema %d after opening a version 1 file", v)
	}
	s.Close()
	setSchema(2) // v1 segments, no v2: raised too
	if s, err = Open(path, Options{}); err != nil {
		t.Fatal(err)
	}
	if v := schema(s); v != 3 {
		t.Fatalf("schema %d after opening a version 2 file", v)
	}
	s.Close()
	setSchema(4)
	if _, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "schema version 4") {
		t.Fatalf("a version 4 file opened: %v", err)
	}
}

// TestAppendAuditLeavesEvents: AppendAudit's fn may run again in a group
// commit, so appendAuditHeads must not set ids or chain values on the
// caller's rows; rows of interleaved workspaces keep their order and
// chain per workspace, with ids in order of each workspace's first row.
func TestAppendAuditLeavesEvents(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "rotor.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var evs []storage.AuditEvent
	for i := range 200 {
		e := sampleEvent(0)
		e.Chain = nil
		e.WorkspaceID = []string{"ws_a", "ws_b"}[i%3/2]
		e.ResourceID = strings.Repeat("r", i%7+1) + string(rune('a'+i%26))
		evs = append(evs, e)
	}
	orig := make([]storage.AuditEvent, len(evs))
	copy(orig, evs)
	ctx := context.Background()
	if _, err := s.AppendAudit(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(evs, orig) {
		t.Fatal("AppendAudit changed the caller's rows")
	}
	nextID := int64(1)
	for _, ws := range []string{"ws_a", "ws_b"} {
		got, err := s.ListAuditAsc(ctx, storage.AuditRange{WorkspaceID: ws, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var want []storage.AuditEvent
		for _, e := range orig {
			if e.WorkspaceID == ws {
				want = append(want, e)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d rows, want %d", ws, len(got), len(want))
		}
		var chain []byte
		for i, e := range got {
			if e.ID != nextID || e.ResourceID != want[i].ResourceID || !bytes.Equal(e.Chain, storage.NextChain(chain, e)) {
				t.Fatalf("%s row %d: id %d (want %d), %s (want %s), or its chain value is wrong", ws, i, e.ID, nextID, e.ResourceID, want[i].ResourceID)
			}
			nextID++
			chain = e.Chain
		}
		h, err := s.GetAuditHead(ctx, ws)
		if err != nil || h.LastID != got[len(got)-1].ID || !bytes.Equal(h.Chain, chain) {
			t.Fatalf("%s: head %+v, %v", ws, h, err)
		}
	}
}
