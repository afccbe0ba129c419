package proxy_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"rotor.sh/rotor/internal/logx"
	"rotor.sh/rotor/proxy"
)

// teeHandler hands each record to slog's JSON handler and to logx's, in
// the same order, so their outputs can be compared line for line.
type teeHandler struct {
	mu        *sync.Mutex
	std, fast slog.Handler
}

func (h teeHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.std.Enabled(ctx, l) }
func (h teeHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.std.Handle(ctx, r.Clone()); err != nil {
		return err
	}
	return h.fast.Handle(ctx, r)
}
func (h teeHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return teeHandler{h.mu, h.std.WithAttrs(a), h.fast.WithAttrs(a)}
}
func (h teeHandler) WithGroup(g string) slog.Handler {
	return teeHandler{h.mu, h.std.WithGroup(g), h.fast.WithGroup(g)}
}

// TestLogLineLogx: the summary lines rotor serve writes through logx (its
// handler, issue 15) are byte for byte those of slog.JSONHandler, for a
// resolved, a refused and an unauthenticated request.
func TestLogLineLogx(t *testing.T) {
	var std, fast bytes.Buffer
	h := teeHandler{&sync.Mutex{}, slog.NewJSONHandler(&std, nil), logx.NewHandler(&fast, slog.LevelInfo)}
	e := newEnv(t, func(o *proxy.Options) { o.Logger = slog.New(h) })
	up := newUpstream(t, false)
	e.secret("TOKEN", tokenValue)
	e.secret("OTHER", "another-value-0123456789")
	e.send(e.client(e.key, nil), "GET", up.URL+"/x", "", "", "X-Key", "${{ secrets.TOKEN }}", "X-Other", "${{ secrets.OTHER }}")
	e.send(e.client(e.key, nil), "GET", up.URL+"/x", "", "", "X-Key", "${{ secrets.NOPE }}")
	e.send(e.client("not-a-key", nil), "GET", up.URL+"/x", "", "")
	if n := strings.Count(std.String(), `"msg":"`+proxy.LogMsgRequest+`"`); n != 3 {
		t.Fatalf("%d summary lines, want 3:\n%s", n, std.String())
	}
	if std.String() != fast.String() {
		t.Fatalf("logx wrote\n%s\nslog wrote\n%s", fast.String(), std.String())
	}
}
