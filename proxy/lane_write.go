package proxy

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// laneCopyBufs are the body copy buffers of the lane (32 KiB, pooled):
// io.Copy into a bufio.Writer would otherwise reach net.TCPConn.ReadFrom,
// which allocates 32 KiB per call for a reader it cannot splice.
var laneCopyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// writerOnly hides a writer's ReadFrom, so io.CopyBuffer uses the pooled
// buffer it is given.
type writerOnly struct{ w io.Writer }

func (w writerOnly) Write(p []byte) (int, error) { return w.w.Write(p) }

// laneDate caches the Date field's value, which changes once a second.
var laneDate atomic.Pointer[laneDateVal]

type laneDateVal struct {
	sec int64
	s   string
}

func laneDateNow() string {
	now := time.Now()
	sec := now.Unix()
	if d := laneDate.Load(); d != nil && d.sec == sec {
		return d.s
	}
	d := &laneDateVal{sec: sec, s: now.UTC().Format(http.TimeFormat)}
	laneDate.Store(d)
	return d.s
}

// laneFraming is how a response body is delimited on the client's
// connection.
type laneFraming int

const (
	frameNone    laneFraming = iota // HEAD, 1xx, 204, 304: no body
	frameLength                     // Content-Length
	frameChunked                    // chunked, with trailers if any
)

// writeResponse writes resp to the client connection, framing it itself
// as net/http's server would frame what relay writes: the status's
// standard reason phrase, the header fields (names net/http would refuse
// are dropped, CR and LF in values become spaces), Content-Length when
// the length is known and there are no trailers, chunked otherwise,
// trailers after the body, no body for HEAD, 1xx, 204 and 304, and
// event streams flushed as they come. It always closes resp.Body (which
// ends the request's summary line) and reports whether the connection can
// carry another request.
func (lc *laneConn) writeResponse(r *http.Request, resp *http.Response, keep bool) bool {
	defer resp.Body.Close()
	bw := lc.bw
	code := resp.StatusCode
	framing := frameChunked
	switch {
	case r.Method == http.MethodHead || code/100 == 1 || code == http.StatusNoContent || code == http.StatusNotModified:
		framing = frameNone
	case resp.ContentLength >= 0 && len(resp.Trailer) == 0:
		framing = frameLength
	}
	bw.WriteString("HTTP/1.1 ")
	// Numbers go into the writer's free space (AvailableBuffer): a local
	// array escaped through Write, an allocation per response.
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(code), 10))
	if text := http.StatusText(code); text != "" {
		bw.WriteByte(' ')
		bw.WriteString(text)
	} else {
		bw.WriteString(" status code ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(code), 10))
	}
	bw.WriteString("\r\n")
	hasDate := false
	for k, vs := range resp.Header {
		switch k {
		case "Transfer-Encoding", "Connection", "Trailer":
			continue // the lane frames the response itself
		case "Content-Length":
			if framing != frameNone {
				continue
			}
		case "Date":
			hasDate = true
		}
		if !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vs {
			writeLaneField(bw, k, v)
		}
	}
	if !hasDate {
		writeLaneField(bw, "Date", laneDateNow())
	}
	switch framing {
	case frameLength:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), resp.ContentLength, 10))
		bw.WriteString("\r\n")
	case frameChunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		if len(resp.Trailer) > 0 {
			bw.WriteString("Trailer: ")
			first := true
			for k := range resp.Trailer {
				if !httpguts.ValidHeaderFieldName(k) {
					continue
				}
				if !first {
					bw.WriteString(", ")
				}
				bw.WriteString(k)
				first = false
			}
			bw.WriteString("\r\n")
		}
	}
	if !keep {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	switch framing {
	case frameNone:
		return true
	case frameLength:
		if resp.ContentLength == 0 {
			return true
		}
		// Exactly Content-Length bytes, or the connection closes: the
		// client must never take the rest of a short body for the next
		// response.
		bp := laneCopyBufs.Get().(*[]byte)
		defer laneCopyBufs.Put(bp)
		buf := *bp
		src := io.LimitedReader{R: resp.Body, N: resp.ContentLength}
		var drip dripFlush
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if _, werr := bw.Write(buf[:n]); werr != nil {
					return false
				}
			}
			if err == io.EOF {
				return src.N == 0
			}
			if err != nil || !drip.tick(bw) {
				return false
			}
		}
	}
	return lc.writeChunked(resp)
}

// laneDripFlush: a response body that keeps coming slowly is flushed to
// the client at least this often, so a write tells the lane that the
// client left. The server's client watch (watchClients) sees most clients
// leave, but not two: one that pipelined bytes before its FIN (unread
// bytes read as present) and, off Linux, one inside a TLS tunnel (no
// POLLRDHUP); for those a write is the only sign, and the write buffer
// would otherwise put it off for 4 KiB of body, which an upstream dripping
// a byte at a time spreads over as long as it likes. Keep both.
const laneDripFlush = time.Second

// dripFlush flushes a relay's writer when laneDripFlush passed since it
// started or last flushed, and reports whether the client still takes
// bytes.
type dripFlush struct{ last time.Time }

func (d *dripFlush) tick(bw *bufio.Writer) bool {
	now := time.Now()
	if d.last.IsZero() {
		d.last = now
		return true
	}
	if now.Sub(d.last) < laneDripFlush {
		return true
	}
	d.last = now
	return bw.Flush() == nil
}

// writeChunked relays the body chunked, then the trailers (after Close,
// which cleans them: loggedBody.Close).
func (lc *laneConn) writeChunked(resp *http.Response) bool {
	bw := lc.bw
	flush := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	bp := laneCopyBufs.Get().(*[]byte)
	defer laneCopyBufs.Put(bp)
	buf := *bp
	var drip dripFlush
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(n), 16))
			bw.WriteString("\r\n")
			bw.Write(buf[:n])
			if _, werr := bw.WriteString("\r\n"); werr != nil {
				return false
			}
			if flush {
				if bw.Flush() != nil {
					return false
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			// The upstream body failed: no last chunk, so the client sees
			// a truncated response, never a complete one.
			return false
		}
		if !flush && !drip.tick(bw) {
			return false
		}
	}
	_ = resp.Body.Close()
	bw.WriteString("0\r\n")
	for k, vs := range resp.Trailer {
		if !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vs {
			writeLaneField(bw, k, v)
		}
	}
	_, err := bw.WriteString("\r\n")
	return err == nil
}

// writeLaneField writes one field line, as net/http's Header.Write does:
// CR and LF in the value become spaces, surrounding spaces are trimmed.
func writeLaneField(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	v = strings.Trim(v, " \t")
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	bw.WriteString(v)
	bw.WriteString("\r\n")
}
