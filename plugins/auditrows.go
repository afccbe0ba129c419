package plugins

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"

	"rotor.sh/rotor/storage"
)

// Audit rows in one bytes field (Capability AUDIT_ROWS, storage.proto's
// AppendAuditRequest.rows). The audit writer sends up to 4,096 access rows
// a call; as AuditEvent messages each row was a message to build, marshal,
// unmarshal (with UTF-8 checks on five strings) and convert on both sides,
// more CPU than the backend's own work for the row. This layout is read in
// one pass: byte fields are slices of the request's own buffer, and each
// distinct string is allocated once per call (a batch repeats a handful of
// workspaces, actors and names).

// auditRowsV1 is the layout's version byte.
const auditRowsV1 = 1

// auditRowsSize is an upper bound of appendAuditRows' output for evs.
func auditRowsSize(evs []storage.AuditEvent) int {
	n := 1 + binary.MaxVarintLen64
	for i := range evs {
		e := &evs[i]
		n += binary.MaxVarintLen64 + 9*binary.MaxVarintLen32 + len(e.WorkspaceID) + len(e.ActorID) + len(e.EventType) +
			len(e.ResourceType) + len(e.ResourceID) + len(e.Input) + len(e.Output) + len(e.Nonce) + len(e.MAC)
	}
	return n
}

// appendAuditRows appends evs in the rows layout (ID and Chain are the
// backend's to set and are not carried).
func appendAuditRows(b []byte, evs []storage.AuditEvent) []byte {
	b = append(b, auditRowsV1)
	b = binary.AppendUvarint(b, uint64(len(evs)))
	for i := range evs {
		e := &evs[i]
		b = binary.AppendVarint(b, ts(e.OccurredAt))
		// Field by field, not through arrays of the fields: copying nine
		// string and slice headers per row showed in the writer's profile.
		b = appendRowField(b, e.WorkspaceID)
		b = appendRowField(b, e.ActorID)
		b = appendRowField(b, e.EventType)
		b = appendRowField(b, e.ResourceType)
		b = appendRowField(b, e.ResourceID)
		b = appendRowField(b, e.Input)
		b = appendRowField(b, e.Output)
		b = appendRowField(b, e.Nonce)
		b = appendRowField(b, e.MAC)
	}
	return b
}

// appendRowField appends s with its length (uvarint; one byte for every
// field of an access row).
func appendRowField[S ~string | ~[]byte](b []byte, s S) []byte {
	if len(s) < 0x80 {
		b = append(b, byte(len(s)))
	} else {
		b = binary.AppendUvarint(b, uint64(len(s)))
	}
	return append(b, s...)
}

// rowReader reads the rows layout. Byte fields are slices of p (the
// request's buffer, owned by this call and never reused); strings are
// interned per call, so no row's string keeps the whole buffer alive in
// whatever the backend holds on to (bbolt keeps chain heads per workspace).
type rowReader struct {
	p      []byte
	err    error
	intern map[string]string
	// last is the previous row's value of each string field: a batch's
	// rows mostly repeat it (workspace, actor, event and resource type),
	// and comparing with it is cheaper than hashing for the map.
	last [5]string
}

func (r *rowReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("storage plugin: audit rows: %s: %w", what, errInvalid)
	}
	r.p = nil
}

func (r *rowReader) uvarint(what string) uint64 {
	v, n := binary.Uvarint(r.p)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.p = r.p[n:]
	return v
}

func (r *rowReader) bytes(what string) []byte {
	n := r.uvarint(what)
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.p)) {
		r.fail(what + " runs past the end")
		return nil
	}
	f := r.p[:n:n]
	r.p = r.p[n:]
	if n == 0 {
		return nil // absent, as the AuditEvent path has it (raw, bs)
	}
	return f
}

func (r *rowReader) str(field int, what string) string {
	f := r.bytes(what)
	if len(f) == 0 {
		return ""
	}
	if string(f) == r.last[field] { // no allocation for the comparison
		return r.last[field]
	}
	s := r.internStr(f, what)
	r.last[field] = s
	return s
}

// internStr returns f as the call's one copy of that string.
func (r *rowReader) internStr(f []byte, what string) string {
	if s, ok := r.intern[string(f)]; ok { // no allocation for the lookup
		return s
	}
	if !utf8.Valid(f) {
		r.fail(what + " is not UTF-8")
		return ""
	}
	s := string(f)
	r.intern[s] = s
	return s
}

// decodeAuditRows reads p (appendAuditRows' layout) into events. It
// refuses, with errInvalid, anything malformed: an unknown version, more
// than MaxBatch rows, a length past the end, a string that is not UTF-8,
// bytes after the last row.
func decodeAuditRows(p []byte) ([]storage.AuditEvent, error) {
	if len(p) == 0 || p[0] != auditRowsV1 {
		return nil, fmt.Errorf("storage plugin: audit rows: unknown layout version: %w", errInvalid)
	}
	r := rowReader{p: p[1:], intern: map[string]string{}}
	n := r.uvarint("row count")
	if r.err != nil {
		return nil, r.err
	}
	if err := checkBatch("audit batch", int64(min(n, uint64(MaxBatch)+1))); err != nil {
		return nil, err
	}
	// Each row takes at least 10 bytes (a varint and nine lengths): a
	// count the buffer cannot hold is refused before anything is allocated.
	if n > uint64(len(r.p))/10 {
		return nil, fmt.Errorf("storage plugin: audit rows: %d rows in %d bytes: %w", n, len(r.p), errInvalid)
	}
	out := make([]storage.AuditEvent, n)
	for i := range out {
		e := &out[i]
		at, k := binary.Varint(r.p)
		if k <= 0 {
			r.fail("occurred_at")
			break
		}
		r.p = r.p[k:]
		e.OccurredAt = tm(at)
		e.WorkspaceID = r.str(0, "workspace_id")
		e.ActorID = r.str(1, "actor_id")
		e.EventType = r.str(2, "event_type")
		e.ResourceType = r.str(3, "resource_type")
		e.ResourceID = r.str(4, "resource_id")
		e.Input = r.bytes("input")
		e.Output = r.bytes("output")
		e.Nonce = r.bytes("nonce")
		e.MAC = r.bytes("mac")
		if r.err != nil {
			break
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.p) > 0 {
		return nil, fmt.Errorf("storage plugin: audit rows: %d bytes after the last row: %w", len(r.p), errInvalid)
	}
	return out, nil
}
