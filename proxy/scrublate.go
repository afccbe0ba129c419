package proxy

import (
	"fmt"
	"io"
	"net/http"
)

// lateScrubReader scrubs the response to a request whose body streams
// (past BufferLimit): that body is rewritten while the upstream reads it,
// so a reference in it may be resolved after the response head arrived,
// and an upstream that answers as it reads (an echo) would send the value
// back past a scrubber built before it was known. After every read from
// the upstream it looks whether more values were resolved; if so, it
// finishes the scan so far and scans from there on with a scrubber of
// every value. That is enough: the upstream cannot send a value before the
// proxy resolved it, and the check follows the read, so every byte read
// after a value was resolved is scanned for it. A body that cannot be
// scanned (a content coding left in place, a 206 slice) fails when a late
// value appears: fail closed.
type lateScrubReader struct {
	src io.ReadCloser
	st  *reqState
	// n is how many resolved values the current scan covers.
	n    int
	scan *scrubScan
	sc   *scrubber
	// opaque, if set, is why the body cannot be scanned.
	opaque   error
	replaced int
	buf, out []byte
	rd       int
	err      error
}

// newLateScrubReader wraps resp's body when its request body streams. sc
// and n are the scrubber already applied (by scrubResponse) and how many
// values it covers.
func newLateScrubReader(resp *http.Response, st *reqState, sc *scrubber, n int) *lateScrubReader {
	l := &lateScrubReader{src: resp.Body, st: st, n: n, sc: sc}
	switch {
	case resp.StatusCode == http.StatusPartialContent:
		l.opaque = fmt.Errorf("%w: a partial (206) response", ErrResponseUnscannable)
	case resp.Header.Get("Content-Encoding") != "":
		l.opaque = fmt.Errorf("%w: an encoded response to a streamed request", ErrResponseUnscannable)
	}
	return l
}

func (l *lateScrubReader) Read(p []byte) (int, error) {
	for l.rd == len(l.out) {
		if l.err != nil {
			return 0, l.err
		}
		if l.buf == nil {
			l.buf = make([]byte, readChunk)
		}
		l.out, l.rd = l.out[:0], 0
		k, rerr := l.src.Read(l.buf)
		if err := l.catchUp(); err != nil {
			// The data just read may hold the late value: dropped.
			l.err = err
			return 0, err
		}
		if l.scan != nil {
			l.out = l.scan.write(l.out, l.buf[:k])
		} else {
			l.out = append(l.out, l.buf[:k]...)
		}
		if rerr != nil {
			if rerr == io.EOF && l.scan != nil {
				l.out = l.scan.close(l.out)
			}
			l.err = rerr
		}
	}
	n := copy(p, l.out[l.rd:])
	l.rd += n
	return n, nil
}

// catchUp switches to a scrubber of every value resolved so far, if more
// were resolved since the last read.
func (l *lateScrubReader) catchUp() error {
	if l.st.resolvedCount() <= l.n {
		return nil
	}
	if l.opaque != nil {
		return l.opaque
	}
	sc, n, err := l.st.scrubberNow()
	if err != nil {
		return err
	}
	if l.scan != nil {
		l.out = l.scan.close(l.out)
		l.replaced += l.scan.replaced
	}
	l.n, l.sc, l.scan = n, sc, nil
	if sc != nil {
		l.scan = &scrubScan{s: sc}
	}
	return nil
}

// replacedCount is how many stretches the late scans replaced.
func (l *lateScrubReader) replacedCount() int {
	if l.scan != nil {
		return l.replaced + l.scan.replaced
	}
	return l.replaced
}

func (l *lateScrubReader) Close() error { return l.src.Close() }

// resolvedCount is how many values the request resolved so far.
func (st *reqState) resolvedCount() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.resolved)
}
