package bolt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"rotor.sh/rotor/storage"
)

// Audit segment formats (issue 15).
//
// A segment is one bbolt value holding one write's rows of one workspace,
// each framed as uvarint(length) + record. Until issue 15 a record was the
// row as JSON, and the segment began with the first frame's length, never
// 0 (a record is at least "{}"). A segment that begins with segMarker has
// a format byte next and records in that format:
//
//	v1, one record: uvarint id | varint unix seconds | uvarint nanoseconds |
//	then workspace_id, actor_id, event_type, resource_type, resource_id,
//	input, output, chain, nonce, mac, each uvarint(length) + bytes.
//
// The id comes first in both formats, so retention finds a record's id
// without decoding the rest. Old JSON segments are read as before and never
// rewritten (no migration): a database holds both, and the chain covers the
// row's values, not how a segment stores them, so both verify alike.
const (
	segMarker = 0x00
	segV1     = 0x01
)

var errCorruptSegment = errors.New("bolt: corrupt audit segment")

// segmentBody returns a segment's framed records and its format (0: JSON).
func segmentBody(seg []byte) ([]byte, byte, error) {
	if len(seg) == 0 || seg[0] != segMarker {
		return seg, 0, nil
	}
	if len(seg) < 2 || seg[1] != segV1 {
		return nil, 0, fmt.Errorf("%w: unknown format", errCorruptSegment)
	}
	return seg[2:], seg[1], nil
}

// nextFrame splits the first framed record off body.
func nextFrame(body []byte) (rec, rest []byte, err error) {
	n, k := binary.Uvarint(body)
	if k <= 0 || uint64(len(body)-k) < n {
		return nil, nil, errCorruptSegment
	}
	return body[k : k+int(n)], body[k+int(n):], nil
}

// appendRecordV1 appends ev as a v1 record (without its frame).
func appendRecordV1(b []byte, ev *storage.AuditEvent) []byte {
	b = binary.AppendUvarint(b, uint64(ev.ID))
	b = binary.AppendVarint(b, ev.OccurredAt.Unix())
	b = binary.AppendUvarint(b, uint64(ev.OccurredAt.Nanosecond()))
	for _, s := range [...]string{ev.WorkspaceID, ev.ActorID, ev.EventType, ev.ResourceType, ev.ResourceID} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, f := range [...][]byte{ev.Input, ev.Output, ev.Chain, ev.Nonce, ev.MAC} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// uvarintLen is the length of binary.AppendUvarint's encoding of v.
func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// recordV1Len is the exact length of appendRecordV1's output for ev.
func recordV1Len(ev *storage.AuditEvent) int {
	sec := ev.OccurredAt.Unix()
	n := uvarintLen(uint64(ev.ID)) + uvarintLen(uint64(sec)<<1^uint64(sec>>63)) + uvarintLen(uint64(ev.OccurredAt.Nanosecond()))
	for _, l := range [...]int{len(ev.WorkspaceID), len(ev.ActorID), len(ev.EventType), len(ev.ResourceType), len(ev.ResourceID),
		len(ev.Input), len(ev.Output), len(ev.Chain), len(ev.Nonce), len(ev.MAC)} {
		n += uvarintLen(uint64(l)) + l
	}
	return n
}

// frameV1Len is the length of appendFrameV1's output for ev.
func frameV1Len(ev *storage.AuditEvent) int {
	n := recordV1Len(ev)
	return uvarintLen(uint64(n)) + n
}

// appendFrameV1 appends ev as a framed v1 record, encoded in place (no
// scratch record to copy).
func appendFrameV1(b []byte, ev *storage.AuditEvent) []byte {
	b = binary.AppendUvarint(b, uint64(recordV1Len(ev)))
	return appendRecordV1(b, ev)
}

// recordIDOf reads a record's id without decoding the rest.
func recordIDOf(rec []byte, format byte) (int64, error) {
	if format == 0 {
		return recordID(rec)
	}
	id, k := binary.Uvarint(rec)
	if k <= 0 || id > math.MaxInt64 {
		return 0, errCorruptSegment
	}
	return int64(id), nil
}

// strCache reuses the previous row's strings: a segment's rows mostly share
// workspace, actor, event and resource type.
type strCache [5]string

func (c *strCache) get(i int, b []byte) string {
	if string(b) != c[i] { // no allocation for the comparison
		c[i] = string(b)
	}
	return c[i]
}

// decodeRecordV1 decodes a v1 record. The byte fields point into one copy
// of the record, capped so appending to one cannot overwrite the next.
func decodeRecordV1(rec []byte, strs *strCache) (storage.AuditEvent, error) {
	var ev storage.AuditEvent
	id, k := binary.Uvarint(rec)
	if k <= 0 || id > math.MaxInt64 {
		return ev, errCorruptSegment
	}
	rec = rec[k:]
	sec, k := binary.Varint(rec)
	if k <= 0 {
		return ev, errCorruptSegment
	}
	rec = rec[k:]
	nsec, k := binary.Uvarint(rec)
	if k <= 0 || nsec >= 1e9 {
		return ev, errCorruptSegment
	}
	rec = bytes.Clone(rec[k:])
	var f [10][]byte
	for i := range f {
		n, k := binary.Uvarint(rec)
		if k <= 0 || uint64(len(rec)-k) < n {
			return ev, errCorruptSegment
		}
		if n > 0 {
			f[i] = rec[k : k+int(n) : k+int(n)]
		}
		rec = rec[k+int(n):]
	}
	if len(rec) != 0 {
		return ev, errCorruptSegment
	}
	ev = storage.AuditEvent{
		ID: int64(id), OccurredAt: time.Unix(sec, int64(nsec)).UTC(),
		WorkspaceID: strs.get(0, f[0]), ActorID: strs.get(1, f[1]), EventType: strs.get(2, f[2]),
		ResourceType: strs.get(3, f[3]), ResourceID: strs.get(4, f[4]),
		Input: f[5], Output: f[6], Chain: f[7], Nonce: f[8], MAC: f[9],
	}
	return ev, nil
}

// decodeSegment decodes a segment's rows with an id above after, oldest
// first. Nothing returned refers to bbolt's memory.
func decodeSegment(seg []byte, after int64) ([]storage.AuditEvent, error) {
	body, format, err := segmentBody(seg)
	if err != nil {
		return nil, err
	}
	var out []storage.AuditEvent
	var strs strCache
	for len(body) > 0 {
		rec, rest, err := nextFrame(body)
		if err != nil {
			return nil, err
		}
		body = rest
		if after > 0 {
			id, err := recordIDOf(rec, format)
			if err != nil {
				return nil, err
			}
			if id <= after {
				continue
			}
		}
		var ev storage.AuditEvent
		if format == 0 {
			// The JSON decoder copies.
			if err := json.Unmarshal(rec, &ev); err != nil {
				return nil, fmt.Errorf("bolt: corrupt audit record: %w", err)
			}
		} else if ev, err = decodeRecordV1(rec, &strs); err != nil {
			return nil, err
		}
		if out == nil {
			out = make([]storage.AuditEvent, 0, 8)
		}
		out = append(out, ev)
	}
	return out, nil
}
