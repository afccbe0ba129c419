package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// maxLibraryLogLine bounds goproxy's own log lines: they can quote a
// client's host and path ("Illegal URL ..."), which a client makes as long
// as it likes.
const maxLibraryLogLine = 512

// goproxyLogger hands goproxy's messages to slog at debug level, bounded.
type goproxyLogger struct{ h slog.Handler }

func (l goproxyLogger) Printf(format string, v ...any) {
	ctx := context.Background()
	if !l.h.Enabled(ctx, slog.LevelDebug) {
		return
	}
	msg := boundField(strings.TrimRight(fmt.Sprintf(format, v...), "\n"), maxLibraryLogLine)
	slog.New(l.h).Debug(msg, "component", "goproxy")
}
