package logx

import (
	"context"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Handler writes JSON lines with the bytes slog.JSONHandler writes. Records
// whose attributes are all of the common kinds (string, integers, finite
// floats, bool, duration, time, error, []string) are encoded here into a
// pooled buffer without reflection; anything else (groups, LogValuers,
// other Any values, handlers from WithAttrs or WithGroup) goes to a
// slog.JSONHandler on the same writer. The proxy writes one line per
// request through it (issue 15), and its summary line takes the fast path.
type Handler struct {
	level slog.Leveler
	w     *lockedWriter
	std   slog.Handler
}

// lockedWriter makes each line one Write under one lock, shared by the
// fast path and the fallback handler.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
	// bw is w when it is a BufferedWriter, whose Write keeps each line
	// whole under its own lock: a second lock per line would add nothing.
	bw *BufferedWriter
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	if l.bw != nil {
		return l.bw.Write(p)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// NewHandler returns a JSON handler writing to w at level (nil: info).
func NewHandler(w io.Writer, level slog.Leveler) *Handler {
	if level == nil {
		level = slog.LevelInfo
	}
	lw := &lockedWriter{w: w}
	lw.bw, _ = w.(*BufferedWriter)
	return &Handler{level: level, w: lw, std: slog.NewJSONHandler(lw, &slog.HandlerOptions{Level: level})}
}

// Enabled reports whether level is at or above the handler's.
func (h *Handler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.level.Level()
}

// WithAttrs returns the fallback handler with attrs (not used on hot paths).
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler { return h.std.WithAttrs(attrs) }

// WithGroup returns the fallback handler with a group.
func (h *Handler) WithGroup(name string) slog.Handler { return h.std.WithGroup(name) }

// maxPooled: larger buffers are not kept (a rare huge line must not pin
// memory).
const maxPooled = 16 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Handle encodes r, or hands it to the fallback when an attribute is not
// of a kind encoded here.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	bp := bufPool.Get().(*[]byte)
	b, ok := appendRecord((*bp)[:0], r)
	if !ok {
		bufPool.Put(bp)
		return h.std.Handle(ctx, r)
	}
	_, err := h.w.Write(b)
	if cap(b) <= maxPooled {
		*bp = b
		bufPool.Put(bp)
	}
	return err
}

// appendRecord appends r as slog.JSONHandler (no options but the level)
// would write it, newline included; ok is false when an attribute needs the
// fallback.
func appendRecord(b []byte, r slog.Record) ([]byte, bool) {
	b, ok := appendHead(b, r.Time, r.Level, r.Message)
	if !ok {
		return b, false
	}
	r.Attrs(func(a slog.Attr) bool {
		b, ok = appendAttr(b, a)
		return ok
	})
	if !ok {
		return b, false
	}
	return append(b, '}', '\n'), true
}

func appendAttr(b []byte, a slog.Attr) ([]byte, bool) {
	if a.Key == "" {
		return b, false // slog drops or inlines these: its rules, its code
	}
	b = append(b, ',')
	b = appendString(b, a.Key)
	b = append(b, ':')
	v := a.Value
	switch v.Kind() {
	case slog.KindString:
		b = appendString(b, v.String())
	case slog.KindInt64:
		b = strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		b = strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindFloat64:
		f := v.Float64()
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return b, false
		}
		b = appendFloat(b, f)
	case slog.KindBool:
		b = strconv.AppendBool(b, v.Bool())
	case slog.KindDuration:
		b = strconv.AppendInt(b, int64(v.Duration()), 10)
	case slog.KindTime:
		t := v.Time()
		if y := t.Year(); y < 0 || y >= 10000 {
			return b, false
		}
		b = append(b, '"')
		b = t.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	case slog.KindAny:
		switch x := v.Any().(type) {
		case []string:
			if x == nil {
				return append(b, "null"...), true
			}
			b = append(b, '[')
			for i, s := range x {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendStringJSON(b, s, true)
			}
			b = append(b, ']')
		case interface{ MarshalJSON() ([]byte, error) }:
			return b, false
		case error:
			b = appendString(b, x.Error())
		default:
			return b, false
		}
	default:
		return b, false
	}
	return b, true
}

// appendFloat formats f as encoding/json does (which slog calls for floats).
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	n := len(b)
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		if m := len(b) - n; m >= 4 && b[len(b)-4] == 'e' && b[len(b)-3] == '-' && b[len(b)-2] == '0' {
			b[len(b)-2] = b[len(b)-1]
			b = b[:len(b)-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// jsonSafe marks the bytes a JSON string holds as they are: printable
// ASCII but the quote and the backslash.
var jsonSafe = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// unsafeIn8 reports whether any of s[i:i+8] is not jsonSafe (a control
// byte, the quote, the backslash, or a byte of a multi-byte character),
// testing the eight as one word: haszero and hasless from "Bit Twiddling
// Hacks", exact as a yes or no.
func unsafeIn8(s string, i int) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	_ = s[i+7]
	x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
	q, bs := x^(lo*'"'), x^(lo*'\\')
	return (x|(x-lo*0x20)&^x|(q-lo)&^q|(bs-lo)&^bs)&hi != 0
}

// appendString appends s quoted as slog's JSON handler does for a string
// (HTML escaping off): control bytes, quote and backslash escaped, invalid
// UTF-8 as U+FFFD, U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte { return appendStringJSON(b, s, false) }

// appendStringJSON is appendString; short, as encoding/json writes \b and \f
// (slog calls it for an Any value such as []string), which slog's own
// string escaper writes as \u0008 and \u000c.
func appendStringJSON(b []byte, s string, short bool) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		// A run of bytes written as they are is found eight at a time,
		// then a lookup each, and goes out in one append (most strings
		// are a single run).
		for i+8 <= len(s) && !unsafeIn8(s, i) {
			i += 8
		}
		for i < len(s) && jsonSafe[s[i]] {
			i++
		}
		if i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b', '\f':
				if short && c == '\b' {
					b = append(b, '\\', 'b')
					break
				}
				if short {
					b = append(b, '\\', 'f')
					break
				}
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
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
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
