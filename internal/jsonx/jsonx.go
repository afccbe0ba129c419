// Package jsonx appends JSON strings and small objects without reflection,
// for the hot paths (audit rows on every secret access, values placed into
// JSON bodies) where encoding/json's allocations and validation show up.
package jsonx

import (
	"strconv"
	"time"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// AppendStringContent appends s escaped for the inside of a JSON string
// literal (no quotes). <, > and & are escaped as encoding/json does, and
// invalid UTF-8 becomes U+FFFD, so the result is always valid JSON.
func AppendStringContent(dst []byte, s []byte) []byte { return appendContent(dst, s) }

// AppendString appends s as a quoted JSON string.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	// Not through []byte(s): the callee keeps no reference, but a string
	// over 32 bytes would still be copied to the heap for the conversion.
	dst = appendContent(dst, s)
	return append(dst, '"')
}

// plain marks the ASCII bytes copied as they are.
var plain = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\' && b != 0x7f && b != '<' && b != '>' && b != '&'
	}
	return t
}()

// appendContent copies runs of plain ASCII in one append each (hosts,
// request ids and names are all plain) and escapes the rest byte by byte.
func appendContent[S ~string | ~[]byte](dst []byte, s S) []byte {
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if plain[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch {
			case b == '"' || b == '\\':
				dst = append(dst, '\\', b)
			case b == '\n':
				dst = append(dst, '\\', 'n')
			case b == '\r':
				dst = append(dst, '\\', 'r')
			case b == '\t':
				dst = append(dst, '\\', 't')
			default: // < 0x20, 0x7f, <, >, &
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		var r rune
		var size int
		switch v := any(s).(type) {
		case string:
			r, size = utf8.DecodeRuneInString(v[i:])
		case []byte:
			r, size = utf8.DecodeRune(v[i:])
		default:
			r, size = utf8.DecodeRune([]byte(s[i:]))
		}
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			start = i + 1
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			start = i + size
		}
		i += size
	}
	return append(dst, s[start:]...)
}

// Object builds a flat JSON object.
type Object struct {
	b []byte
}

// Reuse starts a new object in buf's storage (truncated), so a caller that
// encodes many objects allocates once.
func Reuse(buf []byte) Object { return Object{b: buf[:0]} }

func (o *Object) key(k string) {
	if len(o.b) == 0 {
		o.b = append(o.b, '{')
	} else {
		o.b = append(o.b, ',')
	}
	o.b = AppendString(o.b, k)
	o.b = append(o.b, ':')
}

// Str adds a string field.
func (o *Object) Str(k, v string) *Object {
	o.key(k)
	o.b = AppendString(o.b, v)
	return o
}

// Int adds a number field.
func (o *Object) Int(k string, v int64) *Object {
	o.key(k)
	o.b = strconv.AppendInt(o.b, v, 10)
	return o
}

// Time adds an RFC 3339 (nanosecond) UTC time field.
func (o *Object) Time(k string, t time.Time) *Object {
	o.key(k)
	o.b = append(o.b, '"')
	o.b = t.UTC().AppendFormat(o.b, time.RFC3339Nano)
	o.b = append(o.b, '"')
	return o
}

// Raw adds a field whose value is already JSON (it must be valid).
func (o *Object) Raw(k string, v []byte) *Object {
	if len(v) == 0 {
		return o
	}
	o.key(k)
	o.b = append(o.b, v...)
	return o
}

// Bytes closes and returns the object ("{}" when empty).
func (o *Object) Bytes() []byte {
	if len(o.b) == 0 {
		return []byte("{}")
	}
	return append(o.b, '}')
}
