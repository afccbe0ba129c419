package bolt

import (
	"encoding/json"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
)

// FuzzRecordID: the pruner's id reader agrees with a full decode on every
// record encodeAudit writes, and never panics on anything else.
func FuzzRecordID(f *testing.F) {
	f.Add(int64(1), "ws", `{"host":"a"}`, []byte(`{"id":12,"x":1}`))
	f.Add(int64(1<<62), "ws\"x", `{}`, []byte(`{"id":99999999999999999999999,`))
	f.Add(int64(0), "", `{"a":[1,2]}`, []byte(`{"id":-1,`))
	f.Fuzz(func(t *testing.T, id int64, ws, in string, raw []byte) {
		_, _ = recordID(raw) // arbitrary bytes: an error or an id, no panic
		if id < 0 || !json.Valid([]byte(in)) {
			return
		}
		ev := storage.AuditEvent{ID: id, OccurredAt: time.Unix(0, id).UTC(), WorkspaceID: ws, Input: json.RawMessage(in), Chain: []byte{1, 2}}
		rec := encodeAudit(nil, &ev)
		got, err := recordID(rec)
		if err != nil || got != id {
			t.Fatalf("recordID(%s) = %d, %v; want %d", rec, got, err, id)
		}
	})
}
