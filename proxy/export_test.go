package proxy

import (
	"io"
	"log/slog"
)

// GoproxyLoggerForTest exposes the bounded goproxy logger to the external
// tests.
func GoproxyLoggerForTest(w io.Writer) interface{ Printf(string, ...any) } {
	return goproxyLogger{slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})}
}

// ScrubCacheLen is how many scrubbers p keeps (scrubcache.go).
func ScrubCacheLen(p *Proxy) int { return p.scache.len() }
