package storage

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"testing"
	"time"
)

// refNextChain is the chain's definition as written before issue 15 (every
// JSON field through canonicalJSON, the row through one buffer): the fast
// paths must give the same value for every row, or old trails stop
// verifying.
func refNextChain(prev []byte, e AuditEvent) []byte {
	var b []byte
	put := func(s []byte) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(e.ID))
	b = binary.BigEndian.AppendUint64(b, uint64(e.OccurredAt.UnixNano()))
	for _, s := range []string{e.WorkspaceID, e.ActorID, e.EventType, e.ResourceType, e.ResourceID} {
		put([]byte(s))
	}
	put(canonicalJSON(e.Input))
	put(canonicalJSON(e.Output))
	if len(e.Nonce) > 0 || len(e.MAC) > 0 {
		put(e.Nonce)
		put(e.MAC)
	}
	h := sha256.New()
	h.Write(prev)
	h.Write(b)
	return h.Sum(nil)
}

func FuzzNextChainMatchesDefinition(f *testing.F) {
	f.Add([]byte{1, 2}, int64(7), "ws", "key", `{"host":"api.example.com","request_id":"prx_1"}`, `{"version":3}`, []byte{1}, []byte{2})
	f.Add([]byte(nil), int64(0), "", "", `{ "a" : "<b>&\u2028" }`, ``, []byte(nil), []byte(nil))
	f.Add(bytes.Repeat([]byte{9}, 600), int64(-1), "w\xff", "k", `not json <`, `[1, 2]`, []byte(nil), []byte{3})
	f.Fuzz(func(t *testing.T, prev []byte, id int64, ws, actor, in, out string, nonce, mac []byte) {
		e := AuditEvent{ID: id, OccurredAt: time.Unix(0, id), WorkspaceID: ws, ActorID: actor, EventType: "secret.accessed",
			ResourceType: "secret", ResourceID: "TOKEN", Input: json.RawMessage(in), Output: json.RawMessage(out), Nonce: nonce, MAC: mac}
		if got, want := NextChain(prev, e), refNextChain(prev, e); !bytes.Equal(got, want) {
			t.Fatalf("NextChain = %x, the definition gives %x", got, want)
		}
	})
}

func BenchmarkNextChain(b *testing.B) {
	e := AuditEvent{ID: 12345, OccurredAt: time.Now(), WorkspaceID: "ws_0123456789abcdef", ActorID: "key_0123456789abcdef",
		EventType: "secret.accessed", ResourceType: "secret", ResourceID: "NOTIFY_TOKEN",
		Input: []byte(`{"host":"api.example.com","request_id":"prx_0123456789abcdef"}`), Output: []byte(`{"version":3}`),
		Nonce: bytes.Repeat([]byte{1}, 16), MAC: bytes.Repeat([]byte{2}, 32)}
	prev := bytes.Repeat([]byte{3}, 32)
	b.Run("definition", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			refNextChain(prev, e)
		}
	})
	b.Run("NextChain", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			NextChain(prev, e)
		}
	})
}
