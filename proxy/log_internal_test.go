package proxy

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"rotor.sh/rotor/internal/logx"
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
