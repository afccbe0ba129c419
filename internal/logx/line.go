package logx

import (
	"log/slog"
	"strconv"
	"sync/atomic"
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
		b = append(b, `"time":"`...)
		var ok bool
		if b, ok = appendTime(b, t); !ok {
			return b, false
		}
		b = append(b, `",`...)
	}
	b = append(b, `"level":`...)
	b = appendString(b, level.String())
	b = append(b, `,"msg":`...)
	b = appendString(b, msg)
	return b, true
}

// stamp is one second of one location written as RFC3339Nano writes it:
// the date and clock before the fraction, the zone after it.
type stamp struct {
	sec  int64
	loc  *time.Location
	head string // 2006-01-02T15:04:05
	zone string // Z or -07:00
}

// lastStamp is the second most lines fall in (the proxy writes a line per
// request with time.Now): the line's time then costs its fraction only,
// not a calendar and zone computation. A location's offset changes only
// on whole seconds, so one second of one location has one zone.
var lastStamp atomic.Pointer[stamp]

// appendTime appends t as t.Round(0).AppendFormat(b, time.RFC3339Nano)
// does, or reports false for a year AppendFormat would not write in four
// digits (slog's rule).
func appendTime(b []byte, t time.Time) ([]byte, bool) {
	sec, loc := t.Unix(), t.Location()
	st := lastStamp.Load()
	if st == nil || st.sec != sec || st.loc != loc {
		if y := t.Year(); y < 0 || y >= 10000 {
			return b, false
		}
		f := t.Add(-time.Duration(t.Nanosecond())).Round(0).Format(time.RFC3339Nano)
		st = &stamp{sec: sec, loc: loc, head: f[:19], zone: f[19:]}
		lastStamp.Store(st)
	}
	b = append(b, st.head...)
	if ns := t.Nanosecond(); ns != 0 {
		// The fraction without its trailing zeros (what .999999999 writes).
		var d [10]byte
		d[0] = '.'
		for i := 9; i > 0; i-- {
			d[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 10
		for d[n-1] == '0' {
			n--
		}
		b = append(b, d[:n]...)
	}
	return append(b, st.zone...), true
}

// Millis adds a duration as milliseconds to the microsecond: the bytes
// Float writes for float64(d.Microseconds())/1000 (the proxy's
// duration_ms), without formatting a float. That quotient's shortest
// decimal is the exact one (at most three decimals) while the milliseconds
// fit well within a float64's precision; beyond that, and for negative
// durations, it is formatted as Float does.
func (l *Line) Millis(k string, d time.Duration) {
	l.key(k)
	us := d.Microseconds()
	if us < 0 || us >= 1<<40 {
		l.b = appendFloat(l.b, float64(us)/1000)
		return
	}
	l.b = strconv.AppendInt(l.b, us/1000, 10)
	if f := us % 1000; f != 0 {
		d := [4]byte{'.', byte('0' + f/100), byte('0' + f/10%10), byte('0' + f%10)}
		n := 4
		for d[n-1] == '0' {
			n--
		}
		l.b = append(l.b, d[:n]...)
	}
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
