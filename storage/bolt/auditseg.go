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
	switch {
	case len(seg) >= 2 && seg[1] == segV1:
		return seg[2:], segV1, nil
	case len(seg) >= 2 && seg[1] == segV2:
		_, records, err := parseDictV2(seg[2:])
		return records, segV2, err
	}
	return nil, 0, fmt.Errorf("%w: unknown format", errCorruptSegment)
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

// recordHead reads what every binary record begins with (v1 and v2): id,
// unix seconds, nanoseconds; rest is the record after them.
func recordHead(rec []byte) (id int64, at time.Time, rest []byte, err error) {
	u, k := binary.Uvarint(rec)
	if k <= 0 || u > math.MaxInt64 {
		return 0, at, nil, errCorruptSegment
	}
	rec = rec[k:]
	sec, k := binary.Varint(rec)
	if k <= 0 {
		return 0, at, nil, errCorruptSegment
	}
	rec = rec[k:]
	nsec, k := binary.Uvarint(rec)
	if k <= 0 || nsec >= 1e9 {
		return 0, at, nil, errCorruptSegment
	}
	return int64(u), time.Unix(sec, int64(nsec)).UTC(), rec[k:], nil
}

// lengthFields splits rec into len(f) uvarint(length)-framed fields, which
// must use all of it. Each field points into rec, capped so appending to
// one cannot overwrite the next; an empty field is nil.
func lengthFields(f [][]byte, rec []byte) error {
	for i := range f {
		n, k := binary.Uvarint(rec)
		if k <= 0 || uint64(len(rec)-k) < n {
			return errCorruptSegment
		}
		if n > 0 {
			f[i] = rec[k : k+int(n) : k+int(n)]
		}
		rec = rec[k+int(n):]
	}
	if len(rec) != 0 {
		return errCorruptSegment
	}
	return nil
}

// decodeRecordV1 decodes a v1 record. The byte fields point into one copy
// of the record, capped so appending to one cannot overwrite the next.
func decodeRecordV1(rec []byte, strs *strCache) (storage.AuditEvent, error) {
	var ev storage.AuditEvent
	id, at, rec, err := recordHead(rec)
	if err != nil {
		return ev, err
	}
	var f [10][]byte
	if err := lengthFields(f[:], bytes.Clone(rec)); err != nil {
		return ev, err
	}
	ev = storage.AuditEvent{
		ID: id, OccurredAt: at,
		WorkspaceID: strs.get(0, f[0]), ActorID: strs.get(1, f[1]), EventType: strs.get(2, f[2]),
		ResourceType: strs.get(3, f[3]), ResourceID: strs.get(4, f[4]),
		Input: f[5], Output: f[6], Chain: f[7], Nonce: f[8], MAC: f[9],
	}
	return ev, nil
}

// decodeSegment decodes a segment's rows with an id above after, oldest
// first. Nothing returned refers to bbolt's memory.
func decodeSegment(seg []byte, after int64) ([]storage.AuditEvent, error) {
	if len(seg) >= 2 && seg[0] == segMarker && seg[1] == segV2 {
		return decodeSegmentV2(seg, after)
	}
	body, format, err := segmentBody(seg)
	if err != nil {
		return nil, err
	}
	var strs strCache
	return decodeRecords(body, format, after, func(rec []byte) (storage.AuditEvent, error) {
		if format == 0 {
			var ev storage.AuditEvent
			// The JSON decoder copies.
			if err := json.Unmarshal(rec, &ev); err != nil {
				return ev, fmt.Errorf("bolt: corrupt audit record: %w", err)
			}
			return ev, nil
		}
		return decodeRecordV1(rec, &strs)
	})
}

// decodeRecords decodes body's framed records of one format with an id
// above after (0: all), oldest first, skipping the others by their id alone.
func decodeRecords(body []byte, format byte, after int64, decode func(rec []byte) (storage.AuditEvent, error)) ([]storage.AuditEvent, error) {
	var out []storage.AuditEvent
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
		ev, err := decode(rec)
		if err != nil {
			return nil, err
		}
		if out == nil {
			out = make([]storage.AuditEvent, 0, 8)
		}
		out = append(out, ev)
	}
	return out, nil
}

// Segment format v2 (issue 15's cost per row): a v1 record repeats the
// workspace, actor, event and resource type, the secret's name and the
// request's input on every row, ~80 of its ~250 bytes. A v2 segment starts
// with a dictionary of those values and its records refer to it:
//
//	segment: 0x00 0x02 | uvarint(entries) | each entry uvarint(length) +
//	bytes (never empty) | framed records
//	record: uvarint id | varint unix seconds | uvarint nanoseconds | then
//	workspace_id, actor_id, event_type, resource_type, resource_id, input,
//	output, each uvarint(ref: 0 empty, k entry k-1) | then chain, nonce,
//	mac, each uvarint(length) + bytes.
//
// The dictionary is part of the segment's header (segmentBody skips it),
// so a record still decodes alone against it. It holds every row's values,
// so retention re-encodes a cut segment's kept rows (encodeSegmentV2)
// instead of keeping them under the old header, as it does with v1.
// The id still comes first. Each field's entry is found by comparing with
// the field's last two values (a request's rows share their input; two
// names alternate): a value seen earlier but not among them gets a second
// entry, which costs bytes, never correctness. No hashing.
const segV2 = 0x02

// v2Fields is how many of a record's fields refer to the dictionary.
const v2Fields = 7

// v2Value is one dictionary field of a row: a string field or a byte one
// (kept apart so that nothing is converted, which would allocate).
type v2Value struct {
	s string
	b []byte
}

func (v v2Value) len() int { return len(v.s) + len(v.b) }

// segEncoderV2 builds one v2 segment; its slices are reused segment to
// segment.
type segEncoderV2 struct {
	entries []v2Value       // the dictionary, pointing into the rows
	refs    [][v2Fields]int // per row
	recent  [v2Fields][2]int
	size    int // bytes of the dictionary's entries, framed
}

// plan assigns evs' dictionary refs; the ids and chain values are not
// needed yet. It returns the segment's exact size given the first row's
// id (the others follow it).
func (e *segEncoderV2) plan(evs []*storage.AuditEvent, firstID int64) int {
	e.entries, e.refs, e.size = e.entries[:0], e.refs[:0], 0
	e.recent = [v2Fields][2]int{}
	records := 0
	for r, ev := range evs {
		refs := [v2Fields]int{
			e.refStr(0, ev.WorkspaceID), e.refStr(1, ev.ActorID), e.refStr(2, ev.EventType), e.refStr(3, ev.ResourceType),
			e.refStr(4, ev.ResourceID), e.refBytes(5, ev.Input), e.refBytes(6, ev.Output),
		}
		e.refs = append(e.refs, refs)
		n := recordV2Len(ev, firstID+int64(r), &refs)
		records += uvarintLen(uint64(n)) + n
	}
	return 2 + uvarintLen(uint64(len(e.entries))) + e.size + records
}

// refStr is field f's dictionary ref for s (0: empty), adding an entry
// unless s is one of the field's last two values.
func (e *segEncoderV2) refStr(f int, s string) int {
	if s == "" {
		return 0
	}
	rc := &e.recent[f]
	switch {
	case rc[0] > 0 && e.entries[rc[0]-1].s == s:
		return rc[0]
	case rc[1] > 0 && e.entries[rc[1]-1].s == s:
		rc[0], rc[1] = rc[1], rc[0]
		return rc[0]
	}
	return e.add(f, v2Value{s: s})
}

// refBytes is refStr for a byte field.
func (e *segEncoderV2) refBytes(f int, b []byte) int {
	if len(b) == 0 {
		return 0
	}
	rc := &e.recent[f]
	switch {
	case rc[0] > 0 && string(e.entries[rc[0]-1].b) == string(b):
		return rc[0]
	case rc[1] > 0 && string(e.entries[rc[1]-1].b) == string(b):
		rc[0], rc[1] = rc[1], rc[0]
		return rc[0]
	}
	return e.add(f, v2Value{b: b})
}

func (e *segEncoderV2) add(f int, v v2Value) int {
	e.entries = append(e.entries, v)
	e.size += uvarintLen(uint64(v.len())) + v.len()
	rc := &e.recent[f]
	rc[1], rc[0] = rc[0], len(e.entries)
	return rc[0]
}

// header appends the segment's marker, format and dictionary.
func (e *segEncoderV2) header(b []byte) []byte {
	b = append(b, segMarker, segV2)
	b = binary.AppendUvarint(b, uint64(len(e.entries)))
	for _, v := range e.entries {
		b = binary.AppendUvarint(b, uint64(v.len()))
		b = append(append(b, v.s...), v.b...)
	}
	return b
}

// recordV2Len is the exact length of a v2 record of ev with id and refs
// (its chain value 32 bytes).
func recordV2Len(ev *storage.AuditEvent, id int64, refs *[v2Fields]int) int {
	sec := ev.OccurredAt.Unix()
	n := uvarintLen(uint64(id)) + uvarintLen(uint64(sec)<<1^uint64(sec>>63)) + uvarintLen(uint64(ev.OccurredAt.Nanosecond()))
	for _, r := range refs {
		n += uvarintLen(uint64(r))
	}
	for _, l := range [...]int{32, len(ev.Nonce), len(ev.MAC)} {
		n += uvarintLen(uint64(l)) + l
	}
	return n
}

// appendFrameV2 appends ev (its ID and Chain set) as a framed v2 record.
func appendFrameV2(b []byte, ev *storage.AuditEvent, refs *[v2Fields]int) []byte {
	n := recordV2Len(ev, ev.ID, refs) - 32 + len(ev.Chain)
	b = binary.AppendUvarint(b, uint64(n))
	b = binary.AppendUvarint(b, uint64(ev.ID))
	b = binary.AppendVarint(b, ev.OccurredAt.Unix())
	b = binary.AppendUvarint(b, uint64(ev.OccurredAt.Nanosecond()))
	for _, r := range refs {
		b = binary.AppendUvarint(b, uint64(r))
	}
	for _, f := range [...][]byte{ev.Chain, ev.Nonce, ev.MAC} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// encodeSegmentV2 is a whole v2 segment of evs, whose ids and chain values
// are set (appendAuditHeads encodes as it chains instead): retention's
// re-encoding of a cut segment's kept rows.
func encodeSegmentV2(evs []storage.AuditEvent) []byte {
	var enc segEncoderV2
	ptrs := make([]*storage.AuditEvent, len(evs))
	for i := range evs {
		ptrs[i] = &evs[i]
	}
	b := enc.header(make([]byte, 0, enc.plan(ptrs, evs[0].ID)))
	for i := range evs {
		b = appendFrameV2(b, &evs[i], &enc.refs[i])
	}
	return b
}

// segDictV2 is a v2 segment's dictionary as decoded: byte entries point
// into one copy of the segment, strings are made once per entry.
type segDictV2 struct {
	entries [][]byte
	strs    []string
}

// parseDictV2 splits a v2 segment's body (after marker and format) into
// its dictionary and framed records.
func parseDictV2(body []byte) (entries [][]byte, records []byte, err error) {
	n, k := binary.Uvarint(body)
	if k <= 0 || n > uint64(len(body)-k) { // an entry takes at least a byte
		return nil, nil, errCorruptSegment
	}
	body = body[k:]
	entries = make([][]byte, 0, n)
	for range n {
		v, rest, err := nextFrame(body)
		if err != nil || len(v) == 0 {
			return nil, nil, errCorruptSegment
		}
		entries = append(entries, v[:len(v):len(v)])
		body = rest
	}
	return entries, body, nil
}

func (d *segDictV2) bytes(ref uint64) ([]byte, error) {
	if ref == 0 {
		return nil, nil
	}
	if ref > uint64(len(d.entries)) {
		return nil, errCorruptSegment
	}
	return d.entries[ref-1], nil
}

func (d *segDictV2) str(ref uint64) (string, error) {
	if ref == 0 {
		return "", nil
	}
	if ref > uint64(len(d.entries)) {
		return "", errCorruptSegment
	}
	if d.strs == nil {
		d.strs = make([]string, len(d.entries))
	}
	if d.strs[ref-1] == "" {
		d.strs[ref-1] = string(d.entries[ref-1])
	}
	return d.strs[ref-1], nil
}

// decodeRecordV2 decodes a v2 record against its segment's dictionary.
// The byte fields point into rec, which the caller copied out of bbolt;
// they are capped, so appending to one cannot overwrite another.
func decodeRecordV2(rec []byte, d *segDictV2) (storage.AuditEvent, error) {
	var ev storage.AuditEvent
	id, at, rec, err := recordHead(rec)
	if err != nil {
		return ev, err
	}
	var refs [v2Fields]uint64
	for i := range refs {
		var k int
		if refs[i], k = binary.Uvarint(rec); k <= 0 {
			return ev, errCorruptSegment
		}
		rec = rec[k:]
	}
	var f [3][]byte
	if err := lengthFields(f[:], rec); err != nil {
		return ev, err
	}
	ev = storage.AuditEvent{ID: id, OccurredAt: at, Chain: f[0], Nonce: f[1], MAC: f[2]}
	for i, s := range [...]*string{&ev.WorkspaceID, &ev.ActorID, &ev.EventType, &ev.ResourceType, &ev.ResourceID} {
		if *s, err = d.str(refs[i]); err != nil {
			return ev, err
		}
	}
	if ev.Input, err = d.bytes(refs[5]); err != nil {
		return ev, err
	}
	if ev.Output, err = d.bytes(refs[6]); err != nil {
		return ev, err
	}
	return ev, nil
}

// decodeSegmentV2 is decodeSegment of a v2 segment: one copy of the
// segment holds every row's byte fields, and each dictionary string is
// made once.
func decodeSegmentV2(seg []byte, after int64) ([]storage.AuditEvent, error) {
	entries, body, err := parseDictV2(bytes.Clone(seg[2:]))
	if err != nil {
		return nil, err
	}
	d := segDictV2{entries: entries}
	return decodeRecords(body, segV2, after, func(rec []byte) (storage.AuditEvent, error) { return decodeRecordV2(rec, &d) })
}
