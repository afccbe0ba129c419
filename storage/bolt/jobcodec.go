package bolt

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"rotor.sh/rotor/storage"
)

// Job values are stored in a compact binary encoding (issue 16): every
// lease and every attempt result decodes and re-encodes the whole job, and
// reflection-driven JSON was a quarter of the storage plugin's CPU per
// job. The first byte says which encoding a value has: '{' is the JSON of
// files written before, still read (and rewritten in binary the next time
// the job changes); jobCodecV1 is the layout below. A later layout takes
// the next version byte and keeps decoding the older ones.
//
// v1, after the version byte, in this order: strings and byte strings as
// a uvarint length and the bytes, integers as (u)varints, times as a
// varint of Unix seconds, a uvarint of nanoseconds and a varint of the
// zone offset in minutes (read back as JSON's RFC 3339 reads them: UTC for
// offset 0, the local zone when its offset matches, else a fixed zone),
// maps as a uvarint count of key and value strings:
//
//	ID WorkspaceID Queue Payload IdempotencyKey Status RunAt LeaseUntil
//	LeaseToken Leases RetryFrom EnqueuedBy CreatedAt UpdatedAt DeliveredAt
//	len(Attempts), each: N StartedAt Duration StatusCode ErrorCode
//	  RequestURL RequestHeaders Error ResponseHeaders ResponseExcerpt
//
// Values decode to what the JSON encoding gave: the payload compacted and
// HTML-escaped as encoding/json writes a json.RawMessage, invalid UTF-8 in
// strings replaced by U+FFFD per byte, empty maps and attempt lists nil.
const jobCodecV1 = 0x01

// errJobCodec: a job value is neither JSON nor a known binary version, or
// is cut short.
var errJobCodec = errors.New("bolt: malformed job value")

func encodeJob(j storage.Job) ([]byte, error) {
	// What encoding/json made of the payload: compact, HTML-escaped, and
	// "null" for none; an invalid payload fails the write, as it did.
	payload, err := json.Marshal(json.RawMessage(j.Payload))
	if err != nil {
		return nil, err
	}
	// Zone offsets of a day or more have no RFC 3339 form: JSON refused
	// them, and so does this encoding (its decoder would not read them).
	for _, t := range []time.Time{j.RunAt, j.LeaseUntil, j.CreatedAt, j.UpdatedAt, j.DeliveredAt} {
		if err := checkZone(t); err != nil {
			return nil, err
		}
	}
	for _, a := range j.Attempts {
		if err := checkZone(a.StartedAt); err != nil {
			return nil, err
		}
	}
	n := 64 + len(j.ID) + len(j.WorkspaceID) + len(j.Queue) + len(payload) + len(j.IdempotencyKey) + len(j.EnqueuedBy)
	for _, a := range j.Attempts {
		n += 48 + len(a.ErrorCode) + len(a.RequestURL) + len(a.Error) + len(a.ResponseExcerpt)
		for k, v := range a.RequestHeaders {
			n += 4 + len(k) + len(v)
		}
		for k, v := range a.ResponseHeaders {
			n += 4 + len(k) + len(v)
		}
	}
	b := make([]byte, 0, n)
	b = append(b, jobCodecV1)
	b = appendStr(b, j.ID)
	b = appendStr(b, j.WorkspaceID)
	b = appendStr(b, j.Queue)
	b = appendBytes(b, payload)
	b = appendStr(b, j.IdempotencyKey)
	b = appendStr(b, j.Status)
	b = appendTime(b, j.RunAt)
	b = appendTime(b, j.LeaseUntil)
	b = binary.AppendUvarint(b, j.LeaseToken)
	b = binary.AppendVarint(b, int64(j.Leases))
	b = binary.AppendVarint(b, int64(j.RetryFrom))
	b = appendStr(b, j.EnqueuedBy)
	b = appendTime(b, j.CreatedAt)
	b = appendTime(b, j.UpdatedAt)
	b = appendTime(b, j.DeliveredAt)
	b = binary.AppendUvarint(b, uint64(len(j.Attempts)))
	for _, a := range j.Attempts {
		b = binary.AppendVarint(b, int64(a.N))
		b = appendTime(b, a.StartedAt)
		b = binary.AppendVarint(b, int64(a.Duration))
		b = binary.AppendVarint(b, int64(a.StatusCode))
		b = appendStr(b, a.ErrorCode)
		b = appendStr(b, a.RequestURL)
		b = appendMap(b, a.RequestHeaders)
		b = appendStr(b, a.Error)
		b = appendMap(b, a.ResponseHeaders)
		b = appendStr(b, a.ResponseExcerpt)
	}
	return b, nil
}

// decodeJob reads a job value of either encoding. Nothing it returns
// refers to data (bbolt's memory is valid only in its transaction).
func decodeJob(data []byte) (storage.Job, error) {
	var j storage.Job
	if len(data) == 0 {
		return j, errJobCodec
	}
	switch data[0] {
	case '{':
		err := json.Unmarshal(data, &j)
		return j, err
	case jobCodecV1:
	default:
		return j, fmt.Errorf("%w: unknown encoding %#x", errJobCodec, data[0])
	}
	d := jobDecoder{b: data[1:]}
	j.ID = d.str()
	j.WorkspaceID = d.str()
	j.Queue = d.str()
	if p := d.bytes(); p != nil {
		j.Payload = json.RawMessage(append([]byte(nil), p...))
	}
	j.IdempotencyKey = d.str()
	j.Status = d.str()
	j.RunAt = d.time()
	j.LeaseUntil = d.time()
	j.LeaseToken = d.uvarint()
	j.Leases = int(d.varint())
	j.RetryFrom = int(d.varint())
	j.EnqueuedBy = d.str()
	j.CreatedAt = d.time()
	j.UpdatedAt = d.time()
	j.DeliveredAt = d.time()
	if n := d.count(); n > 0 {
		j.Attempts = make([]storage.Attempt, n)
		for i := range j.Attempts {
			a := &j.Attempts[i]
			a.N = int(d.varint())
			a.StartedAt = d.time()
			a.Duration = time.Duration(d.varint())
			a.StatusCode = int(d.varint())
			a.ErrorCode = d.str()
			a.RequestURL = d.str()
			a.RequestHeaders = d.strMap()
			a.Error = d.str()
			a.ResponseHeaders = d.strMap()
			a.ResponseExcerpt = d.str()
		}
	}
	if d.err != nil {
		return storage.Job{}, d.err
	}
	if len(d.b) != 0 {
		return storage.Job{}, fmt.Errorf("%w: %d bytes after the job", errJobCodec, len(d.b))
	}
	return j, nil
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStr(b []byte, s string) []byte {
	s = jsonString(s)
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func checkZone(t time.Time) error {
	if _, off := t.Zone(); off <= -24*3600 || off >= 24*3600 {
		return fmt.Errorf("%w: zone offset %ds out of range", errJobCodec, off)
	}
	return nil
}

func appendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	b = binary.AppendUvarint(b, uint64(t.Nanosecond()))
	_, off := t.Zone()
	return binary.AppendVarint(b, int64(off/60)) // RFC 3339 keeps minutes
}

func appendMap(b []byte, m map[string]string) []byte {
	b = binary.AppendUvarint(b, uint64(len(m)))
	for k, v := range m {
		b = appendStr(b, k)
		b = appendStr(b, v)
	}
	return b
}

// jsonString is s as a JSON round trip returns it: each byte of invalid
// UTF-8 becomes U+FFFD.
func jsonString(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	out := make([]rune, 0, len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		out = append(out, r) // RuneError for an invalid byte
		i += size
	}
	return string(out)
}

// jobDecoder reads v1 fields; the first failure sticks and later reads
// return zero values.
type jobDecoder struct {
	b   []byte
	err error
}

func (d *jobDecoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w: cut short", errJobCodec)
	}
	d.b = nil
}

func (d *jobDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *jobDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count is a list or map length, bounded by the bytes left (every element
// takes at least one), so a corrupt count cannot make a huge allocation.
func (d *jobDecoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *jobDecoder) bytes() []byte {
	n := d.count()
	if d.err != nil {
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}

func (d *jobDecoder) str() string { return string(d.bytes()) }

func (d *jobDecoder) time() time.Time {
	sec, nsec, offMin := d.varint(), d.uvarint(), d.varint()
	if d.err != nil {
		return time.Time{}
	}
	if nsec >= 1e9 || offMin <= -24*60 || offMin >= 24*60 {
		d.err = fmt.Errorf("%w: time out of range", errJobCodec)
		d.b = nil
		return time.Time{}
	}
	t := time.Unix(sec, int64(nsec))
	if offMin == 0 {
		return t.UTC()
	}
	off := int(offMin) * 60
	if _, local := t.Zone(); local == off {
		return t // time.Unix is in the local zone
	}
	return t.In(time.FixedZone("", off))
}

func (d *jobDecoder) strMap() map[string]string {
	n := d.count()
	if n == 0 || d.err != nil {
		return nil
	}
	m := make(map[string]string, n)
	for range n {
		k := d.str()
		m[k] = d.str()
	}
	return m
}
