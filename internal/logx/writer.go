// Package logx makes the server's JSON log cheap enough to write one line per
// proxied request (issue 15): a handler that encodes flat records without
// reflection, byte for byte as slog.JSONHandler does, and a buffered writer
// that turns one write(2) per line into one per flush.
package logx

import (
	"io"
	"sync"
	"time"
)

// Defaults for NewBufferedWriter.
const (
	// DefaultBufferSize bounds the bytes held: a line that does not fit
	// flushes what is held first (a longer line is written through).
	DefaultBufferSize = 64 << 10
	// DefaultFlushInterval is how long a line may wait before it is
	// written: short enough for `tail -f`, long enough to gather many
	// lines per write under load.
	DefaultFlushInterval = 100 * time.Millisecond
)

// BufferedWriter gathers whole writes (log lines) and writes them to the
// underlying writer when the buffer would overflow, DefaultFlushInterval
// after the first unwritten line, and on Flush and Close. Each Write is kept
// whole: lines from concurrent writers never interleave. Memory is bounded
// by the buffer size. A line written is lost only if the process dies
// without Close (a crash, SIGKILL): at most one interval's lines.
type BufferedWriter struct {
	mu       sync.Mutex
	w        io.Writer
	buf      []byte
	interval time.Duration
	timer    *time.Timer // armed while buf holds unwritten lines
	armed    bool
	closed   bool
	err      error // the last write error, returned by the next Write or Flush
}

// NewBufferedWriter returns a writer buffering up to size bytes (<= 0:
// DefaultBufferSize) for at most interval (<= 0: DefaultFlushInterval).
// Close it to write what is held; it owns no goroutine but the timer's
// callback, which Close stops.
func NewBufferedWriter(w io.Writer, size int, interval time.Duration) *BufferedWriter {
	if size <= 0 {
		size = DefaultBufferSize
	}
	if interval <= 0 {
		interval = DefaultFlushInterval
	}
	b := &BufferedWriter{w: w, buf: make([]byte, 0, size), interval: interval}
	b.timer = time.AfterFunc(time.Hour, b.onTimer)
	b.timer.Stop()
	return b
}

// Write holds p, or writes it through once the writer is closed or when it
// is larger than the buffer.
func (b *BufferedWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		err := b.err
		b.err = nil
		return 0, err
	}
	if b.closed {
		return b.w.Write(p)
	}
	if len(b.buf)+len(p) > cap(b.buf) {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > cap(b.buf) {
			return b.w.Write(p)
		}
	}
	b.buf = append(b.buf, p...)
	if !b.armed {
		b.armed = true
		b.timer.Reset(b.interval)
	}
	return len(p), nil
}

// flushLocked writes what is held. The caller holds mu.
func (b *BufferedWriter) flushLocked() error {
	if b.armed {
		b.timer.Stop()
		b.armed = false
	}
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

func (b *BufferedWriter) onTimer() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.armed = false
	if err := b.flushLocked(); err != nil {
		b.err = err
	}
}

// Flush writes what is held now.
func (b *BufferedWriter) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.flushLocked()
	if err == nil {
		err, b.err = b.err, nil
	}
	return err
}

// FlushClear is Flush, then zeroes the buffer: for text that must not stay
// in this process's memory once written (the first start's credentials,
// which would otherwise sit in the buffer until later lines overwrite them).
func (b *BufferedWriter) FlushClear() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.flushLocked()
	clear(b.buf[:cap(b.buf)])
	if err == nil {
		err, b.err = b.err, nil
	}
	return err
}

// Close writes what is held and stops buffering: later writes go straight
// through (a goroutine still logging during shutdown loses nothing).
func (b *BufferedWriter) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.flushLocked()
	b.timer.Stop()
	b.closed = true
	return err
}
