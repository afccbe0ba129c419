package logx

import (
	"log/slog"
	"strconv"
	"time"
)

// Line builds one JSON line straight into the handler's pooled buffer: the
// bytes Handle writes for a record with the same time, level, message and
// attributes, without the slog.Record (whose attributes past the fifth
// are a heap slice, copied in and iterated out again per line: most of a
// line's cost under the proxy's one line per request, issue 15). Build it
// with the methods, in attribute order, then End it; a Line is used once.
type Line struct {
	h  *Handler
	bp *[]byte
	b  []byte
}

// Line starts a line, or reports false when level is not enabled or t
// cannot be written as Handle writes it (then send a record instead).
func (h *Handler) Line(t time.Time, level slog.Level, msg string) (Line, bool) {
	if level < h.level.Level() {
		return Line{}, false
	}
	bp := bufPool.Get().(*[]byte)
	b, ok := appendHead((*bp)[:0], t, level, msg)
	if !ok {
		bufPool.Put(bp)
		return Line{}, false
	}
	return Line{h: h, bp: bp, b: b}, true
}

// appendHead appends a line's opening, time, level and message (Line's and
// appendRecord's).
func appendHead(b []byte, t time.Time, level slog.Level, msg string) ([]byte, bool) {
	b = append(b, '{')
	if !t.IsZero() {
		t = t.Round(0)
		if y := t.Year(); y < 0 || y >= 10000 {
			return b, false
		}
		b = append(b, `"time":"`...)
		b = t.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `",`...)
	}
	b = append(b, `"level":`...)
	b = appendString(b, level.String())
	b = append(b, `,"msg":`...)
	b = appendString(b, msg)
	return b, true
}

func (l *Line) key(k string) {
	l.b = append(l.b, ',')
	l.b = appendString(l.b, k)
	l.b = append(l.b, ':')
}

// Str adds a string attribute.
func (l *Line) Str(k, v string) {
	l.key(k)
	l.b = appendString(l.b, v)
}

// Int adds an integer attribute.
func (l *Line) Int(k string, v int64) {
	l.key(k)
	l.b = strconv.AppendInt(l.b, v, 10)
}

// Float adds a float attribute; NaN and infinities (which slog writes
// differently) must not be passed.
func (l *Line) Float(k string, f float64) {
	l.key(k)
	l.b = appendFloat(l.b, f)
}

// Bool adds a boolean attribute.
func (l *Line) Bool(k string, v bool) {
	l.key(k)
	l.b = strconv.AppendBool(l.b, v)
}

// Strs adds a []string attribute (slog.Any of it): null when nil.
func (l *Line) Strs(k string, v []string) {
	l.key(k)
	if v == nil {
		l.b = append(l.b, "null"...)
		return
	}
	l.b = append(l.b, '[')
	for i, s := range v {
		if i > 0 {
			l.b = append(l.b, ',')
		}
		l.b = appendStringJSON(l.b, s, true)
	}
	l.b = append(l.b, ']')
}

// End writes the line, as one Write, and returns the buffer to the pool.
func (l *Line) End() error {
	l.b = append(l.b, '}', '\n')
	_, err := l.h.w.Write(l.b)
	if cap(l.b) <= maxPooled {
		*l.bp = l.b
		bufPool.Put(l.bp)
	}
	l.h, l.bp, l.b = nil, nil, nil
	return err
}
