package postgres

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"rotor.sh/rotor/storage"
)

// marshalJob is json.Marshal(j), byte for byte, written directly (issue
// 16): every enqueue, lease and result writes the job's body, and
// reflection-driven encoding was an eighth of the storage plugin's CPU per
// job on PostgreSQL. TestMarshalJobMatchesEncodingJSON and a fuzz test hold
// it to encoding/json's output; a field added to storage.Job or
// storage.Attempt must be added here (the test fails until it is).
func marshalJob(j storage.Job) ([]byte, error) {
	b := make([]byte, 0, 256+len(j.Payload)+len(j.Attempts)*256)
	var err error
	b = append(b, `{"id":`...)
	b = appendJSONString(b, j.ID)
	b = append(b, `,"workspace_id":`...)
	b = appendJSONString(b, j.WorkspaceID)
	b = append(b, `,"queue":`...)
	b = appendJSONString(b, j.Queue)
	b = append(b, `,"payload":`...)
	p, err := json.Marshal(j.Payload) // compact and HTML-escaped, as a field
	if err != nil {
		return nil, err
	}
	b = append(b, p...)
	if j.IdempotencyKey != "" {
		b = append(b, `,"idempotency_key":`...)
		b = appendJSONString(b, j.IdempotencyKey)
	}
	b = append(b, `,"status":`...)
	b = appendJSONString(b, j.Status)
	b = append(b, `,"run_at":`...)
	if b, err = appendJSONTime(b, j.RunAt); err != nil {
		return nil, err
	}
	b = append(b, `,"lease_until":`...)
	if b, err = appendJSONTime(b, j.LeaseUntil); err != nil {
		return nil, err
	}
	if j.LeaseToken != 0 {
		b = append(b, `,"lease_token":`...)
		b = strconv.AppendUint(b, j.LeaseToken, 10)
	}
	if j.Leases != 0 {
		b = append(b, `,"leases":`...)
		b = strconv.AppendInt(b, int64(j.Leases), 10)
	}
	if len(j.Attempts) > 0 {
		b = append(b, `,"attempts":[`...)
		for i, a := range j.Attempts {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendAttemptJSON(b, a); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	if j.RetryFrom != 0 {
		b = append(b, `,"retry_from":`...)
		b = strconv.AppendInt(b, int64(j.RetryFrom), 10)
	}
	b = append(b, `,"enqueued_by":`...)
	b = appendJSONString(b, j.EnqueuedBy)
	b = append(b, `,"created_at":`...)
	if b, err = appendJSONTime(b, j.CreatedAt); err != nil {
		return nil, err
	}
	b = append(b, `,"updated_at":`...)
	if b, err = appendJSONTime(b, j.UpdatedAt); err != nil {
		return nil, err
	}
	b = append(b, `,"delivered_at":`...)
	if b, err = appendJSONTime(b, j.DeliveredAt); err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

func appendAttemptJSON(b []byte, a storage.Attempt) ([]byte, error) {
	var err error
	b = append(b, `{"n":`...)
	b = strconv.AppendInt(b, int64(a.N), 10)
	b = append(b, `,"started_at":`...)
	if b, err = appendJSONTime(b, a.StartedAt); err != nil {
		return nil, err
	}
	b = append(b, `,"duration":`...)
	b = strconv.AppendInt(b, int64(a.Duration), 10)
	if a.StatusCode != 0 {
		b = append(b, `,"status_code":`...)
		b = strconv.AppendInt(b, int64(a.StatusCode), 10)
	}
	if a.ErrorCode != "" {
		b = append(b, `,"error_code":`...)
		b = appendJSONString(b, a.ErrorCode)
	}
	if a.RequestURL != "" {
		b = append(b, `,"request_url":`...)
		b = appendJSONString(b, a.RequestURL)
	}
	if len(a.RequestHeaders) > 0 {
		b = append(b, `,"request_headers":`...)
		b = appendJSONMap(b, a.RequestHeaders)
	}
	if a.Error != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, a.Error)
	}
	if len(a.ResponseHeaders) > 0 {
		b = append(b, `,"response_headers":`...)
		b = appendJSONMap(b, a.ResponseHeaders)
	}
	if a.ResponseExcerpt != "" {
		b = append(b, `,"response_excerpt":`...)
		b = appendJSONString(b, a.ResponseExcerpt)
	}
	return append(b, '}'), nil
}

// appendJSONMap writes m with its keys sorted, as encoding/json does.
func appendJSONMap(b []byte, m map[string]string) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, m[k])
	}
	return append(b, '}')
}

var errJSONTime = errors.New("postgres: job time outside the years 0 to 9999")

// appendJSONTime is time.Time's MarshalJSON: RFC 3339 with nanoseconds,
// refused outside the years 0 to 9999.
func appendJSONTime(b []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y > 9999 {
		return nil, errJSONTime
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

// appendJSONString is encoding/json's string encoding with HTML escaping
// (its default): <, > and & as \u003c..., control characters escaped,
// invalid UTF-8 as \ufffd, U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
