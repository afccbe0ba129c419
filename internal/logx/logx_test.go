package logx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"rotor.sh/rotor/internal/proccpu"
)

var at = time.Date(2026, 11, 29, 22, 34, 1, 123456789, time.UTC)

// both logs r through Handler and slog.JSONHandler and returns the lines.
func both(t testing.TB, msg string, attrs ...slog.Attr) (got, want string) {
	t.Helper()
	var g, w bytes.Buffer
	r := slog.NewRecord(at, slog.LevelInfo, msg, 0)
	r.AddAttrs(attrs...)
	if err := NewHandler(&g, slog.LevelInfo).Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if err := slog.NewJSONHandler(&w, nil).Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return g.String(), w.String()
}

type marshaler struct{}

func (marshaler) MarshalJSON() ([]byte, error) { return []byte(`{"m":1}`), nil }

type valuer struct{}

func (valuer) LogValue() slog.Value { return slog.StringValue("v") }

func TestHandlerMatchesJSONHandler(t *testing.T) {
	cases := [][]slog.Attr{
		// The proxy's summary line.
		{slog.String("request_id", "req_0001"), slog.String("method", "GET"), slog.String("host", "api.example.com:443"),
			slog.Int("status", 200), slog.Float64("duration_ms", 1.234), slog.String("outcome", "resolved"),
			slog.Any("secrets", []string{"TOKEN", "OTHER"}), slog.Int64("bytes_out", 5120), slog.Bool("mitm", true),
			slog.String("actor_id", "key_1"), slog.String("workspace_id", "ws_1"), slog.String("error_code", ""), slog.Int("scrubbed", 2)},
		{slog.Any("secrets", []string(nil)), slog.Any("empty", []string{}), slog.Any("esc", []string{"\b\f\x01<\xff\u2028\"\\"})},
		{slog.String("s", "quote\" back\\ nl\n cr\r tab\t ctl\x01\x1f\b\f del\x7f <&> \u2028\u2029 bad\xff\xfe ünï 日本")},
		{slog.Float64("f", 0), slog.Float64("f", 1e21), slog.Float64("f", 1e-7), slog.Float64("f", -3.5e-10), slog.Float64("f", 123456.789), slog.Float64("f", math.MaxFloat64), slog.Float64("f", 5e-324)},
		{slog.Uint64("u", math.MaxUint64), slog.Int64("i", math.MinInt64), slog.Duration("d", 1500*time.Millisecond), slog.Time("t", at.Add(time.Hour))},
		{slog.Any("err", errors.New("boom \"x\"")), slog.Any("m", marshaler{}), slog.Any("v", valuer{})},
		{slog.Group("g", slog.String("a", "b")), slog.Any("map", map[string]int{"a": 1})},
		{slog.Float64("nan", math.NaN()), slog.Float64("inf", math.Inf(1))},
		{slog.String("", "empty key")},
		{},
	}
	for i, attrs := range cases {
		if got, want := both(t, fmt.Sprintf("msg %d \"x\"", i), attrs...); got != want {
			t.Errorf("case %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

func FuzzHandlerMatchesJSONHandler(f *testing.F) {
	f.Add("proxy request", "api.example.com", "TOKEN", int64(200), 1.25, true)
	f.Add("\xff\u2028", "<&>\"\\", "\x00", int64(-1), 1e-9, false)
	f.Fuzz(func(t *testing.T, msg, host, secret string, n int64, d float64, flag bool) {
		if got, want := both(t, msg, slog.String("host", host), slog.Any("secrets", []string{secret, host}),
			slog.Int64("n", n), slog.Float64("d", d), slog.Bool("b", flag)); got != want {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	})
}

func TestHandlerLevelAndDerived(t *testing.T) {
	var buf bytes.Buffer
	h := NewHandler(&buf, slog.LevelWarn)
	if h.Enabled(context.Background(), slog.LevelInfo) || !h.Enabled(context.Background(), slog.LevelError) {
		t.Fatal("level not honoured")
	}
	l := slog.New(h).With("component", "x").WithGroup("g")
	l.Error("e", "k", 1)
	if want := `"level":"ERROR","msg":"e","component":"x","g":{"k":1}}`; !strings.HasSuffix(strings.TrimSpace(buf.String()), want) {
		t.Fatalf("derived handler wrote %q", buf.String())
	}
}

// countWriter records each Write it gets.
type countWriter struct {
	mu     sync.Mutex
	writes [][]byte
}

func (c *countWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func (c *countWriter) snapshot() (n int, all []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.writes), bytes.Join(c.writes, nil)
}

func TestBufferedWriterFlushesOnSizeIntervalAndClose(t *testing.T) {
	cw := &countWriter{}
	bw := NewBufferedWriter(cw, 100, time.Hour)
	line := []byte(strings.Repeat("x", 39) + "\n") // 40 bytes
	bw.Write(line)
	bw.Write(line)
	if n, _ := cw.snapshot(); n != 0 {
		t.Fatalf("%d writes before the buffer filled", n)
	}
	bw.Write(line) // 120 > 100: the two held lines go first
	if n, all := cw.snapshot(); n != 1 || len(all) != 80 {
		t.Fatalf("after overflow: %d writes, %d bytes", n, len(all))
	}
	big := bytes.Repeat([]byte("y"), 150)
	bw.Write(big) // flushes the held line, then is written through
	if n, all := cw.snapshot(); n != 3 || !bytes.HasSuffix(all, big) {
		t.Fatalf("after a large line: %d writes", n)
	}
	bw.Write(line)
	if err := bw.Close(); err != nil {
		t.Fatal(err)
	}
	if n, all := cw.snapshot(); n != 4 || len(all) != 3*40+150+40 {
		t.Fatalf("after close: %d writes, %d bytes", n, len(all))
	}
	bw.Write(line) // after close: straight through
	if n, _ := cw.snapshot(); n != 5 {
		t.Fatalf("a write after close was held (%d writes)", n)
	}

	cw = &countWriter{}
	bw = NewBufferedWriter(cw, 0, 10*time.Millisecond)
	defer bw.Close()
	bw.Write(line)
	deadline := time.Now().Add(5 * time.Second)
	for n, _ := cw.snapshot(); n == 0; n, _ = cw.snapshot() {
		if time.Now().After(deadline) {
			t.Fatal("a held line was not written by the interval")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBufferedWriterConcurrentLinesStayWhole: lines from many goroutines
// through the handler arrive whole, none lost, each valid JSON.
func TestBufferedWriterConcurrentLinesStayWhole(t *testing.T) {
	cw := &countWriter{}
	bw := NewBufferedWriter(cw, 4096, time.Millisecond)
	log := slog.New(NewHandler(bw, slog.LevelInfo))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				log.Info("proxy request", "g", g, "i", i, "host", strings.Repeat("h", i%300))
			}
		})
	}
	wg.Wait()
	if err := bw.Close(); err != nil {
		t.Fatal(err)
	}
	_, all := cw.snapshot()
	lines := strings.Split(strings.TrimSuffix(string(all), "\n"), "\n")
	if len(lines) != 8*500 {
		t.Fatalf("%d lines, want %d", len(lines), 8*500)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, `{"time":`) || !strings.HasSuffix(l, `}`) {
			t.Fatalf("torn line %q", l)
		}
	}
}

func BenchmarkHandler(b *testing.B) {
	attrs := []slog.Attr{slog.String("request_id", "req_0001"), slog.String("method", "GET"), slog.String("host", "api.example.com:443"),
		slog.Int("status", 200), slog.Float64("duration_ms", 1.234), slog.String("outcome", "resolved"),
		slog.Any("secrets", []string{"TOKEN", "OTHER"}), slog.Int64("bytes_out", 5120), slog.Bool("mitm", false),
		slog.String("actor_id", "key_1"), slog.String("workspace_id", "ws_1")}
	for _, bc := range []struct {
		name string
		h    func() slog.Handler
	}{
		{"slog", func() slog.Handler { return slog.NewJSONHandler(discard{}, nil) }},
		{"logx", func() slog.Handler { return NewHandler(discard{}, nil) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := slog.New(bc.h())
			b.ReportAllocs()
			for b.Loop() {
				l.LogAttrs(context.Background(), slog.LevelInfo, "proxy request", attrs...)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestLineSameAsHandle: a Line writes the bytes Handle (and so
// slog.JSONHandler) writes for the same record.
func TestLineSameAsHandle(t *testing.T) {
	at := time.Date(2026, 11, 30, 2, 3, 4, 567890123, time.FixedZone("x", 3600)) // not UTC: written as given
	for _, tc := range []struct {
		name string
		s    string
		ss   []string
		f    float64
	}{
		{"plain", "prx_0123456789abcdef", []string{"TOKEN", "USER"}, 1.234},
		{"escapes", "a\"b\\c\n\t\x01\u2028\xff<>&é", []string{"\b\f", ""}, 0},
		{"nil list", "", nil, 1e-7},
		{"empty list", "x", []string{}, 3e21},
	} {
		var viaLine, viaHandle, viaSlog bytes.Buffer
		h := NewHandler(&viaLine, slog.LevelInfo)
		l, ok := h.Line(at, slog.LevelInfo, "proxy request")
		if !ok {
			t.Fatal("no line")
		}
		l.Str("request_id", tc.s)
		l.Int("status", -200)
		l.Float("duration_ms", tc.f)
		l.Strs("secrets", tc.ss)
		l.Bool("mitm", true)
		l.Str(tc.s, "key too")
		if err := l.End(); err != nil {
			t.Fatal(err)
		}
		r := slog.NewRecord(at, slog.LevelInfo, "proxy request", 0)
		r.AddAttrs(slog.String("request_id", tc.s), slog.Int("status", -200), slog.Float64("duration_ms", tc.f),
			slog.Any("secrets", tc.ss), slog.Bool("mitm", true), slog.String(tc.s, "key too"))
		if tc.s == "" {
			// slog drops an attribute with an empty key; a Line writes
			// what it is given (the proxy's keys are constants).
			continue
		}
		for _, hh := range []slog.Handler{NewHandler(&viaHandle, slog.LevelInfo), slog.NewJSONHandler(&viaSlog, nil)} {
			if err := hh.Handle(context.Background(), r); err != nil {
				t.Fatal(err)
			}
		}
		if viaLine.String() != viaHandle.String() || viaLine.String() != viaSlog.String() {
			t.Errorf("%s:\nline   %s\nhandle %s\nslog   %s", tc.name, viaLine.String(), viaHandle.String(), viaSlog.String())
		}
	}
	// Below the handler's level, no line.
	if _, ok := NewHandler(io.Discard, slog.LevelWarn).Line(at, slog.LevelInfo, "x"); ok {
		t.Error("a line below the handler's level")
	}
}

// TestFlushClearLeavesNothing: after FlushClear the text was written and
// no byte of it is left in the buffer's memory.
func TestFlushClearLeavesNothing(t *testing.T) {
	var out bytes.Buffer
	b := NewBufferedWriter(&out, 256, time.Hour)
	defer b.Close()
	const canary = "rotor-canary-credential-0123456789"
	if _, err := b.Write([]byte("key " + canary + "\n")); err != nil {
		t.Fatal(err)
	}
	if err := b.FlushClear(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), canary) {
		t.Fatalf("not written: %q", out.String())
	}
	if bytes.Contains(b.buf[:cap(b.buf)], []byte("canary")) {
		t.Fatal("the credential is still in the buffer")
	}
}

// BenchmarkLine is the proxy's summary line (proxy.writeSummary) built
// with Line: one per request under rotor serve (issue 15).
func BenchmarkLine(b *testing.B) {
	h := NewHandler(discard{}, nil)
	secrets := []string{"TOKEN", "USER"}
	b.ReportAllocs()
	cpu0 := proccpu.Self()
	for b.Loop() {
		l, ok := h.Line(time.Now(), slog.LevelInfo, "proxy request")
		if !ok {
			b.Fatal("no line")
		}
		l.Str("request_id", "prx_0123456789abcdef")
		l.Str("method", "GET")
		l.Str("host", "127.0.0.1:43121")
		l.Int("status", 200)
		l.Float("duration_ms", 0.187)
		l.Str("outcome", "resolved")
		l.Strs("secrets", secrets)
		l.Int("bytes_out", 2)
		l.Bool("mitm", false)
		l.Str("actor_id", "key_0123456789abcdef")
		l.Str("workspace_id", "ws_default")
		_ = l.End()
	}
	b.ReportMetric(float64(proccpu.Self()-cpu0)/float64(b.N), "cpu-ns/op")
}

// TestAppendTimeSameAsFormat: the cached second (appendTime) writes what
// AppendFormat(RFC3339Nano) writes, for times that hit the cache (the same
// second again, with another fraction) and miss it (another second, the
// same second in another location), in zones with and without offsets,
// across a DST change, and refuses the years slog refuses.
func TestAppendTimeSameAsFormat(t *testing.T) {
	locs := []*time.Location{time.UTC, time.Local, time.FixedZone("x", 3600), time.FixedZone("y", -(9*3600 + 30*60))}
	if ny, err := time.LoadLocation("America/New_York"); err == nil {
		locs = append(locs, ny)
	}
	r := rand.New(rand.NewPCG(7, 8))
	base := time.Date(2026, 3, 8, 6, 59, 58, 0, time.UTC) // 2 s before New York's DST change
	check := func(tm time.Time) {
		t.Helper()
		got, ok := appendTime(nil, tm)
		want := tm.Round(0).AppendFormat(nil, time.RFC3339Nano)
		if y := tm.Year(); y < 0 || y >= 10000 {
			if ok {
				t.Fatalf("%v: written %q, want refused", tm, got)
			}
			return
		}
		if !ok || string(got) != string(want) {
			t.Fatalf("%v: %q (%v), want %q", tm, got, ok, want)
		}
	}
	for i := range 5000 {
		tm := base.Add(time.Duration(r.IntN(5)) * time.Second).Add(time.Duration(r.IntN(1e9)))
		switch i % 5 {
		case 0:
			tm = tm.Truncate(time.Second) // no fraction
		case 1:
			tm = tm.Truncate(time.Millisecond) // trailing zeros
		case 2:
			tm = time.Unix(r.Int64N(300e9)-62e9, r.Int64N(1e9)) // years 0 to 11000
		}
		// The same second in every location in turn (a miss each), then
		// again with another fraction (a hit).
		for _, loc := range locs {
			check(tm.In(loc))
			check(tm.Add(time.Duration(r.IntN(1e9)) - time.Duration(tm.Nanosecond())).In(loc))
		}
		if i%100 == 0 {
			check(time.Now())
		}
	}
	check(time.Date(-1, 1, 1, 0, 0, 0, 5, time.UTC))
	check(time.Date(10000, 1, 1, 0, 0, 0, 5, time.UTC))
}

// TestMillisSameAsFloat: Millis writes the bytes Float writes for
// float64(d.Microseconds())/1000, the proxy's duration_ms.
func TestMillisSameAsFloat(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	ds := []time.Duration{0, 1, 999, time.Microsecond, 999 * time.Microsecond, time.Millisecond, 1001 * time.Microsecond,
		1230 * time.Microsecond, 1<<40*time.Microsecond - 1, 1 << 40 * time.Microsecond, -time.Microsecond, -1234567, 1<<63 - 1, -1 << 63,
		// Near 2^53 µs the float's shortest form is not the exact
		// quotient (…849.775 for …849.776): the bound matters.
		9223372036849776 * time.Microsecond}
	for range 20000 {
		ds = append(ds, time.Duration(r.Int64N(1<<uint(1+r.IntN(62)))))
	}
	h := NewHandler(io.Discard, nil)
	for _, d := range ds {
		a, _ := h.Line(time.Time{}, slog.LevelInfo, "")
		b, _ := h.Line(time.Time{}, slog.LevelInfo, "")
		a.Millis("d", d)
		b.Float("d", float64(d.Microseconds())/1000)
		if string(a.b) != string(b.b) {
			t.Fatalf("%d: Millis %s, Float %s", d, a.b, b.b)
		}
	}
}

// TestUnsafeIn8: the word test says yes exactly when one of the eight
// bytes is not jsonSafe, for every byte value at every position beside
// safe bytes and random others.
func TestUnsafeIn8(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for p := range 8 {
		for v := range 256 {
			b := []byte("a~ Z0}!^")
			b[p] = byte(v)
			if got := unsafeIn8(string(b), 0); got != !jsonSafe[v] {
				t.Fatalf("%q: %v", b, got)
			}
		}
	}
	for range 100000 {
		var b [8]byte
		want := false
		for i := range b {
			b[i] = byte(r.IntN(256))
			if r.IntN(2) == 0 {
				b[i] = byte(0x20 + r.IntN(0x60))
			}
			want = want || !jsonSafe[b[i]]
		}
		if got := unsafeIn8(string(b[:]), 0); got != want {
			t.Fatalf("%q: %v", b, got)
		}
	}
}
