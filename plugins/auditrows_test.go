package plugins

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	pb "rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/bolt"
)

func rowsFixture() []storage.AuditEvent {
	at := time.Date(2026, 11, 30, 1, 2, 3, 456789, time.UTC)
	return []storage.AuditEvent{
		{OccurredAt: at, WorkspaceID: "ws_1", ActorID: "key_a", EventType: "secret.accessed", ResourceType: "secret", ResourceID: "TOKEN",
			Input: []byte(`{"host":"api.example.com","request_id":"prx_1"}`), Output: []byte(`{"version":3}`),
			Nonce: bytes.Repeat([]byte{0xfe}, 16), MAC: bytes.Repeat([]byte{0x01}, 32)},
		// Empty fields stay absent, a zero time stays zero, non-ASCII text
		// passes, and the ID and chain a host might hold are not carried.
		{ID: 99, Chain: []byte("ignored"), WorkspaceID: "ws_é", ActorID: "", EventType: "secret.access_denied", ResourceType: "secret", ResourceID: "USER"},
		{OccurredAt: time.Unix(0, -5).UTC(), WorkspaceID: "ws_1", ActorID: "key_a", EventType: "secret.accessed", ResourceType: "secret", ResourceID: "TOKEN",
			Input: []byte(`{}`)},
	}
}

func TestAuditRowsRoundTrip(t *testing.T) {
	evs := rowsFixture()
	b := appendAuditRows(nil, evs)
	if len(b) > auditRowsSize(evs) {
		t.Fatalf("encoded %d bytes, size bound %d", len(b), auditRowsSize(evs))
	}
	got, err := decodeAuditRows(b)
	if err != nil {
		t.Fatal(err)
	}
	want := evs
	want[1].ID, want[1].Chain = 0, nil
	// What the AuditEvent path delivers is the reference.
	for i := range want {
		if ref := eventFromPB(eventToPB(want[i])); !reflect.DeepEqual(got[i], ref) {
			t.Errorf("row %d:\n got %#v\nwant %#v", i, got[i], ref)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	// Repeated strings are one string, not one per row.
	if unsafe.StringData(got[0].WorkspaceID) != unsafe.StringData(got[2].WorkspaceID) {
		t.Error("a repeated workspace id is not shared")
	}
}

func TestAuditRowsMalformed(t *testing.T) {
	good := appendAuditRows(nil, rowsFixture())
	overCount := binary.AppendUvarint([]byte{auditRowsV1}, uint64(MaxBatch)+1)
	badUTF8 := appendAuditRows(nil, []storage.AuditEvent{{WorkspaceID: "ws\xff", EventType: "x"}})
	for name, p := range map[string][]byte{
		"empty":   nil,
		"version": append([]byte{2}, good[1:]...),
		// Exactly MaxBatch+1 empty rows: well formed but for the count.
		"over MaxBatch":  append(overCount, make([]byte, 10*(MaxBatch+1))...),
		"count too high": binary.AppendUvarint([]byte{auditRowsV1}, 3),
		"truncated":      good[:len(good)-1],
		"trailing":       append(bytes.Clone(good), 0),
		"not UTF-8":      badUTF8,
		"length past end": append(binary.AppendUvarint([]byte{auditRowsV1}, 1),
			append([]byte{0, 200}, make([]byte, 10)...)...),
	} {
		_, err := decodeAuditRows(p)
		if !errors.Is(err, errInvalid) {
			t.Errorf("%s: %v, want errInvalid", name, err)
		}
		if name == "over MaxBatch" && (err == nil || !strings.Contains(err.Error(), "exceeds the limit")) {
			t.Errorf("%s: %v, want the batch limit's refusal", name, err)
		}
	}
}

// TestAuditRowsSameRowsAsEvents: a batch sent as rows and the same batch
// sent as AuditEvent messages store the same rows with the same chain.
func TestAuditRowsSameRowsAsEvents(t *testing.T) {
	ctx := context.Background()
	var stored [2][]storage.AuditEvent
	var heads [2][]*pb.AuditAppended
	for i, asRows := range []bool{false, true} {
		st, err := bolt.Open(filepath.Join(t.TempDir(), "rotor.db"), bolt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		srv := NewServer(func(context.Context, *pb.ConfigureRequest) (storage.Store, error) { return st, nil })
		if _, err := srv.Configure(ctx, &pb.ConfigureRequest{Backend: "bbolt"}); err != nil {
			t.Fatal(err)
		}
		d, err := srv.Describe(ctx, &pb.DescribeRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if !hasCap(d.Capabilities, pb.Capability_AUDIT_ROWS) {
			t.Fatal("the server does not report AUDIT_ROWS")
		}
		req := &pb.AppendAuditRequest{Events: eventsToPB(rowsFixture())}
		if asRows {
			req = &pb.AppendAuditRequest{Rows: appendAuditRows(nil, rowsFixture())}
		}
		res, err := srv.AppendAudit(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		heads[i] = res.Appended
		for _, ws := range []string{"ws_1", "ws_é"} {
			evs, err := st.ListAuditAsc(ctx, storage.AuditRange{WorkspaceID: ws, Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			stored[i] = append(stored[i], evs...)
		}
		// Both at once is refused, and nothing is appended.
		if _, err := srv.AppendAudit(ctx, &pb.AppendAuditRequest{Events: eventsToPB(rowsFixture()[:1]), Rows: appendAuditRows(nil, rowsFixture()[:1])}); !errors.Is(fromStatus("AppendAudit", err), errInvalid) {
			t.Errorf("events and rows together: %v, want INVALID_ARGUMENT", err)
		}
		if n, _ := st.ListAuditAsc(ctx, storage.AuditRange{WorkspaceID: "ws_1", Limit: 10}); len(n) != 2 {
			t.Errorf("after a refused call ws_1 has %d rows, want 2", len(n))
		}
		srv.Close()
	}
	if len(stored[0]) != 3 || !reflect.DeepEqual(stored[0], stored[1]) {
		t.Errorf("stored rows differ:\nevents %#v\nrows   %#v", stored[0], stored[1])
	}
	if len(heads[0]) != 2 || len(heads[1]) != 2 {
		t.Fatalf("appended heads: %v / %v", heads[0], heads[1])
	}
}

func hasCap(cs []pb.Capability, c pb.Capability) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

func FuzzAuditRows(f *testing.F) {
	f.Add(appendAuditRows(nil, rowsFixture()))
	f.Add(appendAuditRows(nil, nil))
	f.Add([]byte{auditRowsV1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		evs, err := decodeAuditRows(p)
		if err != nil {
			return
		}
		// What decodes re-encodes to rows that decode the same.
		again, err := decodeAuditRows(appendAuditRows(nil, evs))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(evs, again) {
			t.Fatalf("re-encoded rows differ:\n%#v\n%#v", evs, again)
		}
	})
}

// TestLaunchSendsAuditRows: the host sends rows to a plugin that reports
// AUDIT_ROWS, AuditEvent messages when told not to (NoAuditRows, the path
// an older plugin gets), and the plugin stores the same trail either way.
func TestLaunchSendsAuditRows(t *testing.T) {
	ctx := context.Background()
	var chains [2][]byte
	for i, noRows := range []bool{false, true} {
		s, err := Launch(ctx, LaunchOptions{Path: os.Args[0], Env: []string{"ROTOR_TEST_AS_PLUGIN=1"}, NoAuditRows: noRows,
			Config: &pb.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(t.TempDir(), "rotor.db")}})
		if err != nil {
			t.Fatal(err)
		}
		if rows := s.Client.conn.Load().caps[pb.Capability_AUDIT_ROWS]; rows == noRows {
			t.Errorf("NoAuditRows %v: AUDIT_ROWS in use %v", noRows, rows)
		}
		if _, err := s.AppendAudit(ctx, rowsFixture()); err != nil {
			t.Fatal(err)
		}
		evs, err := s.ListAuditAsc(ctx, storage.AuditRange{WorkspaceID: "ws_1", Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 2 || evs[1].ResourceID != "TOKEN" || string(evs[0].Input) != string(rowsFixture()[0].Input) {
			t.Fatalf("NoAuditRows %v: stored %#v", noRows, evs)
		}
		chains[i] = evs[1].Chain
		s.Close()
	}
	if !bytes.Equal(chains[0], chains[1]) {
		t.Error("rows and events stored different chains")
	}
}

// appendAuditRowsRef is appendAuditRows as first written: the layout's
// reference encoding.
func appendAuditRowsRef(b []byte, evs []storage.AuditEvent) []byte {
	b = append(b, auditRowsV1)
	b = binary.AppendUvarint(b, uint64(len(evs)))
	for i := range evs {
		e := &evs[i]
		b = binary.AppendVarint(b, ts(e.OccurredAt))
		for _, s := range [...]string{e.WorkspaceID, e.ActorID, e.EventType, e.ResourceType, e.ResourceID} {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
		for _, f := range [...][]byte{e.Input, e.Output, e.Nonce, e.MAC} {
			b = binary.AppendUvarint(b, uint64(len(f)))
			b = append(b, f...)
		}
	}
	return b
}

// FuzzAppendAuditRowsSame: the encoder writes the reference's bytes, for
// fields on both sides of the one-byte length.
func FuzzAppendAuditRowsSame(f *testing.F) {
	f.Add("ws_1", "key_a", "TOKEN", []byte(`{"host":"api.example.com"}`), 127, int64(1))
	f.Add("", "", "", []byte(nil), 128, int64(-5))
	f.Add("ws_é", "k", strings.Repeat("N", 300), []byte(`{}`), 16384, int64(0))
	f.Fuzz(func(t *testing.T, ws, actor, name string, in []byte, macLen int, at int64) {
		macLen = max(0, min(macLen, 1<<16))
		evs := rowsFixture()
		evs = append(evs, storage.AuditEvent{OccurredAt: time.Unix(0, at), WorkspaceID: ws, ActorID: actor, EventType: "secret.accessed",
			ResourceType: "secret", ResourceID: name, Input: in, Output: in, Nonce: in, MAC: make([]byte, macLen)})
		if got, want := appendAuditRows(nil, evs), appendAuditRowsRef(nil, evs); !bytes.Equal(got, want) {
			t.Fatalf("encoding differs from the reference's")
		}
	})
}

// BenchmarkAppendAuditRows: the host's encoding of a 2,000-row batch, per
// row (ref: the reference encoder, for comparison).
func BenchmarkAppendAuditRows(b *testing.B) {
	evs := make([]storage.AuditEvent, 2000)
	for i := range evs {
		evs[i] = rowsFixture()[0]
	}
	for _, c := range []struct {
		name string
		enc  func([]byte, []storage.AuditEvent) []byte
	}{{"enc", appendAuditRows}, {"ref", appendAuditRowsRef}} {
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, 0, auditRowsSize(evs))
			b.ReportAllocs()
			for b.Loop() {
				buf = c.enc(buf[:0], evs)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/row")
		})
	}
}
