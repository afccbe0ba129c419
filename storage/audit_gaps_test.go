package storage_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
)

// Every column of an audit row, edited alone, changes what the chain
// covers: a column left out of AuditCanonical could be rewritten (an
// output, a resource_type) without the chain noticing. Fields are found by
// reflection, so a column added later is covered or this test fails.
func TestAuditCanonicalCoversEveryColumn(t *testing.T) {
	base := storage.AuditEvent{
		ID: 42, OccurredAt: time.Date(2026, 5, 6, 7, 8, 9, 123456000, time.UTC), WorkspaceID: "ws_a", ActorID: "key_1",
		EventType: "secret.updated", ResourceType: "secret", ResourceID: "TOKEN",
		Input: json.RawMessage(`{"name":"TOKEN"}`), Output: json.RawMessage(`{"version":2}`),
		Nonce: []byte("nonce"), MAC: []byte("mac"),
	}
	canon := storage.AuditCanonical(base)
	chain := storage.NextChain([]byte("prev"), base)
	typ := reflect.TypeOf(base)
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Name == "Chain" { // the result, not an input
			continue
		}
		edited := base
		v := reflect.ValueOf(&edited).Elem().Field(i)
		switch x := v.Interface().(type) {
		case int64:
			v.SetInt(x + 1)
		case string:
			v.SetString(x + "x")
		case time.Time:
			v.Set(reflect.ValueOf(x.Add(time.Microsecond)))
		case json.RawMessage:
			v.Set(reflect.ValueOf(json.RawMessage(`{"edited":true}`)))
		case []byte:
			v.SetBytes(append(slices.Clone(x), 'x'))
		default:
			t.Fatalf("field %s of type %s: teach this test to edit it", f.Name, f.Type)
		}
		if bytes.Equal(storage.AuditCanonical(edited), canon) {
			t.Errorf("editing %s alone leaves AuditCanonical unchanged", f.Name)
		}
		if bytes.Equal(storage.NextChain([]byte("prev"), edited), chain) {
			t.Errorf("editing %s alone leaves the chain value unchanged", f.Name)
		}
	}
	// Moving bytes between adjacent columns changes it too (length prefixes).
	moved := base
	moved.ResourceType, moved.ResourceID = "secretT", "OKEN"
	if bytes.Equal(storage.AuditCanonical(moved), canon) {
		t.Error("moving bytes between resource_type and resource_id is not seen")
	}
	// An output present vs absent differs.
	none := base
	none.Output = nil
	if bytes.Equal(storage.AuditCanonical(none), canon) {
		t.Error("dropping the output is not seen")
	}
	// Moving bytes between nonce and MAC, or stripping both, is seen.
	shifted := base
	shifted.Nonce, shifted.MAC = []byte("noncem"), []byte("ac")
	stripped := base
	stripped.Nonce, stripped.MAC = nil, nil
	if bytes.Equal(storage.AuditCanonical(shifted), canon) || bytes.Equal(storage.AuditCanonical(stripped), canon) {
		t.Error("moving bytes between nonce and MAC, or stripping them, is not seen")
	}
}
