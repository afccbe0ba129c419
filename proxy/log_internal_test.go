package proxy

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"rotor.sh/rotor/internal/logx"
	"rotor.sh/rotor/internal/proccpu"
	"rotor.sh/rotor/vault"
)

// TestSummaryLineDirect: the summary line written straight into logx's
// buffer (rotor serve's handler) is byte for byte slog.JSONHandler's line
// for the same entry, with every optional field and without.
func TestSummaryLineDirect(t *testing.T) {
	now := time.Date(2026, 11, 30, 2, 3, 4, 567890123, time.UTC)
	for _, e := range []logEntry{
		{id: "prx_0123456789abcdef", method: "GET", host: "api.example.com:443", status: 200, outcome: OutcomeResolved,
			secrets: []string{"TOKEN", "USER"}, actor: vault.Actor{KeyID: "key_1", WorkspaceID: "ws_1"}, mitm: true, bytesOut: 5120, scrubbed: 2},
		{id: "prx_1", method: "CONNECT", host: strings.Repeat("h\"", 400), status: 407, outcome: OutcomeRefused, code: CodeProxyAuthRequired},
		{id: "prx_2", method: "BREW\n", host: "x", status: 502, outcome: OutcomeFailed, secrets: []string{}},
	} {
		var direct, std bytes.Buffer
		writeSummary(logx.NewHandler(&direct, slog.LevelInfo), e, now, 1234567*time.Nanosecond)
		writeSummary(slog.NewJSONHandler(&std, nil), e, now, 1234567*time.Nanosecond)
		if direct.Len() == 0 || direct.String() != std.String() {
			t.Errorf("direct\n%s\nslog\n%s", direct.String(), std.String())
		}
	}
}

// BenchmarkSummaryLine is one request's summary line as rotor serve writes
// it (logx's handler; a discarding writer).
func BenchmarkSummaryLine(b *testing.B) {
	h := logx.NewHandler(discardW{}, slog.LevelInfo)
	e := logEntry{id: "prx_0123456789abcdef", method: "GET", host: "127.0.0.1:43121", status: 200, outcome: OutcomeResolved,
		secrets: []string{"TOKEN", "USER"}, actor: vault.Actor{KeyID: "key_0123456789abcdef", WorkspaceID: "ws_default"}, bytesOut: 2}
	b.ReportAllocs()
	cpu0 := proccpu.Self()
	for b.Loop() {
		writeSummary(h, e, time.Now(), 187*time.Microsecond)
	}
	b.ReportMetric(float64(proccpu.Self()-cpu0)/float64(b.N), "cpu-ns/op")
}

type discardW struct{}

func (discardW) Write(p []byte) (int, error) { return len(p), nil }

// TestSummaryLineGolden pins one summary line's bytes (field names, order,
// the time's and duration's forms), so a change to either encoder that
// TestSummaryLineDirect would pass on both sides still shows.
func TestSummaryLineGolden(t *testing.T) {
	const want = `{"time":"2026-11-30T02:03:04.56789Z","level":"INFO","msg":"proxy request","request_id":"prx_0123456789abcdef",` +
		`"method":"GET","host":"api.example.com:443","status":200,"duration_ms":1.23,"outcome":"resolved","secrets":["TOKEN","USER"],` +
		`"bytes_out":5120,"mitm":true,"actor_id":"key_1","workspace_id":"ws_1","scrubbed":2}` + "\n"
	e := logEntry{id: "prx_0123456789abcdef", method: "GET", host: "api.example.com:443", status: 200, outcome: OutcomeResolved,
		secrets: []string{"TOKEN", "USER"}, actor: vault.Actor{KeyID: "key_1", WorkspaceID: "ws_1"}, mitm: true, bytesOut: 5120, scrubbed: 2}
	now := time.Date(2026, 11, 30, 2, 3, 4, 567890000, time.UTC)
	for range 2 { // the second line reuses the cached second
		var got bytes.Buffer
		writeSummary(logx.NewHandler(&got, slog.LevelInfo), e, now, 1230400*time.Nanosecond)
		if got.String() != want {
			t.Fatalf("got\n%s\nwant\n%s", got.String(), want)
		}
	}
}
