package plugins

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// readBufSize is a frame reader's buffer: typical frames (a secret, a
// workspace, a batch of jobs) fit, so a frame costs one read syscall, or
// none when it came with the previous one.
const readBufSize = 64 << 10

// frameReader reads frames from one socket into a reusable buffer. A frame
// is taken only once it is whole in the buffer, so a read cut short (a
// slice elapsed, the caller gave up) loses nothing: the next reader (on
// the host, the next holder of the read token) resumes with the bytes
// already read. It polls the socket before parking (spin.go).
type frameReader struct {
	s    fastSock
	buf  []byte
	r, w int
}

func newFrameReader(s fastSock) *frameReader {
	return &frameReader{s: s, buf: make([]byte, readBufSize)}
}

// next takes the next whole frame from the buffer (ok false: more bytes
// are needed). body aliases the buffer: it is valid until the next call
// of next, wait or fill.
func (fr *frameReader) next() (kind byte, id uint64, body []byte, ok bool, err error) {
	avail := fr.w - fr.r
	if avail < frameHeader {
		return 0, 0, nil, false, nil
	}
	h := fr.buf[fr.r:]
	n := binary.LittleEndian.Uint32(h[:4])
	if n < frameHeader-4 || n > maxFrame {
		return 0, 0, nil, false, fmt.Errorf("%w: length %d", errFrame, n)
	}
	total := 4 + int(n)
	if avail < total {
		fr.reserve(total)
		return 0, 0, nil, false, nil
	}
	kind, id, body = h[4], binary.LittleEndian.Uint64(h[5:]), h[frameHeader:total:total]
	fr.r += total
	return kind, id, body, true, nil
}

// reserve makes room for a frame of total bytes from r, growing the
// buffer (only once the frame's length has been checked against the
// limit) for a frame larger than it.
func (fr *frameReader) reserve(total int) {
	if len(fr.buf)-fr.r >= total {
		return
	}
	buf := fr.buf
	if total > len(buf) {
		buf = make([]byte, total)
	}
	fr.w = copy(buf, fr.buf[fr.r:fr.w])
	fr.r, fr.buf = 0, buf
}

// own returns body, the frame next last returned, for the caller to keep
// past the next read. A frame larger than the reader's buffer (an audit
// batch: ~450 KB for 2,000 rows) arrived in a buffer grown for it alone:
// the reader gives that buffer up rather than copying the frame (issue
// 15: the copy was 5% of the plugin's CPU under audit load). reserve sized
// that buffer to end with the frame, so nothing else is read into it; any
// bytes after the frame would be moved to a buffer of the reader's own.
// Smaller frames share the reusable buffer and are copied.
func (fr *frameReader) own(body []byte) []byte {
	if len(fr.buf) <= readBufSize {
		return bytes.Clone(body)
	}
	buf := make([]byte, max(readBufSize, fr.w-fr.r))
	fr.w = copy(buf, fr.buf[fr.r:fr.w])
	fr.r, fr.buf = 0, buf
	return body
}

// room makes the buffer's tail free for a read, rewinding it when every
// frame in it has been taken (and dropping a buffer grown for a large
// frame).
func (fr *frameReader) room() {
	if fr.r == fr.w {
		fr.r, fr.w = 0, 0
		if len(fr.buf) > readBufSize {
			fr.buf = make([]byte, readBufSize)
		}
	}
	if fr.w == len(fr.buf) {
		fr.reserve(len(fr.buf) - fr.r + 1)
	}
}

// fill blocks (parks) until the socket has more bytes (errSlice: its
// read slice elapsed first).
func (fr *frameReader) fill() error {
	fr.room()
	n, err := fr.s.read(fr.buf[fr.w:])
	fr.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// poll makes one non-blocking read: got is false when the socket had
// nothing yet.
func (fr *frameReader) poll() (got bool, err error) {
	fr.room()
	n, err := fr.s.tryRead(fr.buf[fr.w:])
	fr.w += n
	return n > 0, err
}

// wait reads more of the socket into the buffer: it polls for as long as
// sp allows, then parks. errSlice: the read slice elapsed, or done was
// closed while polling; the caller checks its context and parks again
// with fill.
func (fr *frameReader) wait(sp *spinner, done <-chan struct{}) error {
	b := sp.budget()
	if b == 0 || !fr.s.canPoll() {
		err := fr.fill()
		sp.learn(spinParked)
		return err
	}
	start := time.Now()
	last := start
	for {
		got, err := fr.poll()
		if err != nil {
			return err
		}
		if got {
			sp.hitAfter(time.Since(start))
			return nil
		}
		select {
		case <-done:
			return errSlice
		default:
		}
		now := time.Now()
		if now.Sub(last) > sp.stall {
			sp.stalls++
			break
		}
		if now.Sub(start) >= b {
			break
		}
		last = now
	}
	sp.learn(spinTimeout)
	return fr.fill()
}
