package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// laneClient is the lane's upstream HTTP/1.1 client. The handling
// goroutine writes the request and reads the response head itself, on a
// pooled keep-alive connection: none of http.Transport's per-connection
// writeLoop and readLoop goroutines and their hand-offs on the hot path.
// It keeps the transport's rules that matter here: the guarded dialer
// (dial.go), the configured upstream roots for TLS, the response header
// timeout, reuse of a connection only after its body was read to the
// end, a liveness check of idle connections before reuse (MSG_PEEK) and one retry
// of a bodiless idempotent request whose reused connection the peer had
// closed. What it does not take (Expect, trailers in the request,
// non-ASCII hosts, protocol upgrades) goes to the http.Transport.
type laneClient struct {
	dial       func(ctx context.Context, network, addr string) (net.Conn, error)
	tlsConf    *tls.Config
	headerWait time.Duration

	mu    sync.Mutex
	idle  map[laneKey][]*upConn
	nIdle int
	sweep *time.Timer
}

// Limits of the lane client's pool, as the transport had them.
const (
	laneMaxIdle        = 4096
	laneMaxIdlePerHost = 512
	laneIdleTimeout    = 90 * time.Second
	laneTLSHandshake   = 10 * time.Second
	laneMax1xx         = 5
	laneUpReadBuf      = 4 << 10
	laneUpWriteBuf     = 4 << 10
	// laneMaxResponseHead bounds an upstream response head (each 1xx
	// and the final one), as http.Transport's MaxResponseHeaderBytes
	// default does: http.ReadResponse alone reads a head of any size, so
	// one hostile upstream could fill the proxy's memory.
	laneMaxResponseHead = 10 << 20
)

// upConn is one upstream connection.
type upConn struct {
	c net.Conn
	// lim is what br reads c through: bounded while a response head is
	// read (laneMaxResponseHead), unbounded for bodies.
	lim    limitedConn
	br     *bufio.Reader
	bw     *bufio.Writer
	key    laneKey
	idleAt time.Time
	// expire moves c's deadline to the past (a request's context ended).
	expire func()
	reused bool
	// peek checks, before reuse, that the peer did not close c.
	peek *peeker
}

// takes reports whether the lane client can send r; otherwise the
// transport does.
func (lc *laneClient) takes(r *http.Request) bool {
	if r.URL.Scheme != "http" && r.URL.Scheme != "https" || len(r.Trailer) > 0 {
		return false
	}
	if r.Body != nil && r.Body != http.NoBody && (r.ContentLength <= 0 || r.ContentLength > BufferLimit) {
		// A streamed body (rewritten past BufferLimit, or passed through
		// compressed): the transport sends it on its own goroutine while
		// the response is read, so an upstream that answers as it reads
		// never deadlocks against a client that writes first.
		return false
	}
	if _, ok := r.Header["Expect"]; ok {
		return false
	}
	if _, ok := r.Header["Upgrade"]; ok {
		return false
	}
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	for i := 0; i < len(host); i++ {
		if host[i] >= 0x80 {
			return false // IDNA: the transport's punycode conversion
		}
	}
	return true
}

// RoundTrip sends r, on a connection of pool's, and returns the response
// head; the body streams from the connection, which returns to the pool
// when the body was read to its end and closed. r.Body is always closed.
func (lc *laneClient) RoundTrip(r *http.Request, pool upstreamPool) (*http.Response, error) {
	var kb [128]byte
	dest, err := laneConnKey(kb[:0], r)
	if err != nil {
		closeReqBody(r)
		return nil, err
	}
	retryable := (r.Body == nil || r.Body == http.NoBody) &&
		(r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions || r.Method == http.MethodTrace)
	for attempt := 0; ; attempt++ {
		uc, err := lc.get(r.Context(), pool, dest, len(r.URL.Scheme)+len("://"), r.URL.Scheme == "https", r.URL.Hostname())
		if err != nil {
			closeReqBody(r)
			return nil, err
		}
		resp, err := lc.roundTrip(uc, r)
		if err == nil {
			return resp, nil
		}
		uc.c.Close()
		if errors.Is(err, errLaneRetry) && retryable && attempt == 0 {
			continue
		}
		closeReqBody(r)
		return nil, err
	}
}

func closeReqBody(r *http.Request) {
	if r.Body != nil {
		_ = r.Body.Close()
	}
}

// laneKey is what a pooled connection may be reused for: one pool's
// requests to one destination.
type laneKey struct {
	pool upstreamPool
	dest string // scheme://host:port
}

// laneConnKey appends a pool key's destination, scheme://host:port (the
// dial address after the scheme's "://", as net.JoinHostPort writes it),
// to b: built in the caller's buffer and looked up without a string (two
// allocations per request); a string is made only when a connection is
// dialed.
func laneConnKey(b []byte, r *http.Request) ([]byte, error) {
	host, port := r.URL.Hostname(), r.URL.Port()
	if host == "" {
		return nil, errors.New("proxy: no host in the request URL")
	}
	if port == "" {
		port = "80"
		if r.URL.Scheme == "https" {
			port = "443"
		}
	}
	b = append(append(b, r.URL.Scheme...), "://"...)
	if strings.IndexByte(host, ':') >= 0 {
		b = append(append(append(b, '['), host...), ']')
	} else {
		b = append(b, host...)
	}
	return append(append(b, ':'), port...), nil
}

func (lc *laneClient) roundTrip(uc *upConn, r *http.Request) (resp *http.Response, err error) {
	// The request's context bounds the whole exchange, body included (the
	// dispatcher's per-queue timeout arrives this way when it delivers
	// in-process): when it ends, the connection's deadline is moved to
	// the past, which ends any write or read in progress. A connection
	// whose deadline may have been moved is never pooled again.
	ctx := r.Context()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	w, ok := watchExchange(ctx, uc)
	if !ok {
		return nil, ctx.Err()
	}
	defer func() {
		if err != nil {
			w.release()
			if cerr := ctx.Err(); cerr != nil {
				err = cerr
			}
		}
	}()
	if err := writeLaneRequest(uc.bw, r); err != nil {
		if uc.reused && isPeerClosed(err) {
			return nil, fmt.Errorf("%w: %v", errLaneRetry, err)
		}
		return nil, err
	}
	if lc.headerWait > 0 {
		_ = uc.c.SetReadDeadline(time.Now().Add(lc.headerWait))
		if err := ctx.Err(); err != nil {
			return nil, err // ended before the deadline above replaced its own
		}
	}
	// The bound covers response heads only. It is lifted below, before the
	// connection can go back to the pool (a deferred lift would race with
	// the next request that takes it); a connection that fails here is
	// closed, never pooled, so it keeps its bound.
	for range laneMax1xx + 1 {
		uc.lim.bound(laneMaxResponseHead)
		resp, err = http.ReadResponse(uc.br, r)
		if uc.lim.exhausted() {
			// Whatever ReadResponse made of a cut head, it is refused.
			if resp != nil {
				_ = resp.Body.Close()
			}
			return nil, fmt.Errorf("%w: more than %d bytes", errLaneHeadTooLarge, laneMaxResponseHead)
		}
		if err != nil {
			if uc.reused && isPeerClosed(err) {
				return nil, fmt.Errorf("%w: %v", errLaneRetry, err)
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, errors.New("timeout awaiting response headers")
			}
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		// An informational response (100 Continue, 103 Early Hints): the
		// final one follows.
		resp = nil
	}
	uc.lim.unbound()
	if resp == nil {
		return nil, errors.New("too many 1xx informational responses")
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return nil, errors.New("unexpected 101 Switching Protocols")
	}
	_ = uc.c.SetReadDeadline(time.Time{})
	if err := ctx.Err(); err != nil {
		return nil, err // ended before the line above cleared its deadline
	}
	keep := !resp.Close && !r.Close
	if resp.Body == http.NoBody {
		// HEAD, 204, 304: nothing to read, the connection is free now
		// (and NoBody tells decodeResponse there is nothing to decode).
		if !w.release() {
			keep = false
		}
		if keep && uc.br.Buffered() == 0 {
			lc.put(uc)
		} else {
			uc.c.Close()
		}
		return resp, nil
	}
	resp.Body = &upBody{rc: resp.Body, uc: uc, lc: lc, keep: keep, left: resp.ContentLength, w: w}
	return resp, nil
}

// isPeerClosed reports whether err is the peer having closed the
// connection (EOF, reset, broken pipe) rather than a timeout.
func isPeerClosed(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	var oe *net.OpError
	return errors.As(err, &oe)
}

// requestTarget is u.RequestURI() as the path before any '?' and the
// query after it (TestRequestTargetLikeRequestURI).
func requestTarget(u *url.URL) (path, query string, hasQuery bool) {
	if u.Opaque != "" {
		// Rare: the joined form, split at its first '?' (an opaque
		// part has none of its own that RequestURI would not also write).
		ruri := u.RequestURI()
		if i := strings.IndexByte(ruri, '?'); i >= 0 {
			return ruri[:i], ruri[i+1:], true
		}
		return ruri, "", false
	}
	path = u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return path, u.RawQuery, u.ForceQuery || u.RawQuery != ""
}

// targetBytesOK reports whether s holds no space, control character or
// DEL: nothing that could end or split the request line.
func targetBytesOK(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// writeLaneRequest writes r's head and body, as http.Transport writes
// it: the request target in origin form, Host, User-Agent (Go's default
// unless the request sets one), userinfo as Basic credentials, the
// header fields, and the body with its Content-Length. A field
// name or value that could split the request (CR, LF, NUL and other
// controls) is refused before a byte is written. The body is always
// closed; a body that fails mid-way leaves the upstream request
// unterminated (the connection is then closed, never reused). Bodies here
// are buffered (takes): writing all of one before reading the response
// cannot block on an upstream that answers while it reads.
func writeLaneRequest(bw *bufio.Writer, r *http.Request) (err error) {
	defer closeReqBody(r)
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	if !httpguts.ValidHostHeader(host) {
		return errors.New("invalid Host header")
	}
	for k, vs := range r.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("invalid header field name %q", boundField(k, 40))
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				// The value is not echoed: it may hold a resolved secret.
				return fmt.Errorf("invalid header field value for %q", boundField(k, 40))
			}
		}
	}
	// The target is written as RequestURI returns it, in its two pieces:
	// no string joining the path and the query per request.
	rpath, rquery, hasQuery := requestTarget(r.URL)
	if rpath == "" || rpath[0] != '/' && (rpath != "*" || hasQuery) {
		return errors.New("invalid request target")
	}
	if !targetBytesOK(rpath) || !targetBytesOK(rquery) {
		return errors.New("invalid request target")
	}
	hasBody := r.Body != nil && r.Body != http.NoBody
	cl := r.ContentLength
	if !hasBody {
		cl = 0
	} else if cl <= 0 {
		// takes sends bodies of unknown length through the transport.
		return fmt.Errorf("%w: no length", errLaneBody)
	}
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(rpath)
	if hasQuery {
		bw.WriteByte('?')
		bw.WriteString(rquery)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(removeZone(host))
	bw.WriteString("\r\n")
	if r.URL.User != nil && r.Header.Get("Authorization") == "" {
		user := r.URL.User.Username()
		pass, _ := r.URL.User.Password()
		auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
		writeLaneField(bw, "Authorization", "Basic "+auth)
	}
	if _, ok := r.Header["User-Agent"]; !ok {
		bw.WriteString("User-Agent: Go-http-client/1.1\r\n")
	}
	for k, vs := range r.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		case "User-Agent":
			if len(vs) == 0 || vs[0] == "" {
				continue
			}
		}
		for _, v := range vs {
			writeLaneField(bw, k, v)
		}
	}
	if cl > 0 || r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), cl, 10))
		bw.WriteString("\r\n")
	}
	if r.Close {
		bw.WriteString("Connection: close\r\n")
	}
	if _, err := bw.WriteString("\r\n"); err != nil {
		return err
	}
	if mb, ok := r.Body.(*memBody); ok {
		// Held in memory: one copy into the writer, which for a small
		// body leaves with the head in one write.
		n, err := mb.writeTo(bw)
		if err != nil {
			return fmt.Errorf("%w: %v", errLaneBody, err)
		}
		if n != cl {
			return fmt.Errorf("%w: body is %d bytes, Content-Length %d", errLaneBody, n, cl)
		}
	} else if hasBody {
		bp := laneCopyBufs.Get().(*[]byte)
		n, err := io.CopyBuffer(writerOnly{bw}, io.LimitReader(r.Body, cl), *bp)
		laneCopyBufs.Put(bp)
		if err != nil {
			return fmt.Errorf("%w: %v", errLaneBody, err)
		}
		if n != cl {
			return fmt.Errorf("%w: body is %d bytes, Content-Length %d", errLaneBody, n, cl)
		}
	}
	return bw.Flush()
}

// removeZone drops an IPv6 zone from a Host value (it names an interface
// of this machine, nothing the upstream knows), as net/http does.
func removeZone(host string) string {
	if len(host) == 0 || host[0] != '[' {
		return host
	}
	for i := 1; i < len(host); i++ {
		switch host[i] {
		case ']':
			return host
		case '%':
			for j := i; j < len(host); j++ {
				if host[j] == ']' {
					return host[:i] + host[j:]
				}
			}
			return host
		}
	}
	return host
}

// get returns a live idle connection of pool's for dest, or dials one
// (the address is dest[addrAt:]).
func (lc *laneClient) get(ctx context.Context, pool upstreamPool, dest []byte, addrAt int, useTLS bool, serverName string) (*upConn, error) {
	for {
		uc := lc.popIdle(pool, dest)
		if uc == nil {
			break
		}
		// The peer may have closed it while it idled (an idle timeout):
		// such a connection is never written to, whatever the method.
		if !uc.peek.peerClosed() && uc.br.Buffered() == 0 {
			uc.reused = true
			return uc, nil
		}
		uc.c.Close() // closed, or sent bytes nobody asked for
	}
	c, err := lc.dial(ctx, "tcp", string(dest[addrAt:]))
	if err != nil {
		return nil, err
	}
	if useTLS {
		cfg := lc.tlsConf.Clone()
		cfg.ServerName = serverName
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(c, cfg)
		hctx, cancel := context.WithTimeout(ctx, laneTLSHandshake)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			c.Close()
			return nil, err
		}
		c = tc
	}
	uc := &upConn{c: c, key: laneKey{pool, string(dest)}, bw: bufio.NewWriterSize(c, laneUpWriteBuf), peek: newPeeker(c)}
	uc.lim = limitedConn{c: c, n: -1}
	uc.br = bufio.NewReaderSize(&uc.lim, laneUpReadBuf)
	return uc, nil
}

// limitedConn reads c, at most n bytes while n >= 0 (then it fails with
// errLaneHeadTooLarge).
type limitedConn struct {
	c   net.Conn
	n   int64
	hit bool
}

func (l *limitedConn) bound(n int64) { l.n, l.hit = n, false }
func (l *limitedConn) unbound()      { l.n = -1 }
func (l *limitedConn) exhausted() bool {
	return l.hit
}

func (l *limitedConn) Read(p []byte) (int, error) {
	if l.n < 0 {
		return l.c.Read(p)
	}
	if l.n == 0 {
		l.hit = true
		return 0, errLaneHeadTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.c.Read(p)
	l.n -= int64(n)
	return n, err
}

func (lc *laneClient) popIdle(pool upstreamPool, dest []byte) *upConn {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	list := lc.idle[laneKey{pool, string(dest)}] // no allocation for a lookup
	if len(list) == 0 {
		return nil
	}
	// Writes to the map use a pooled connection's key: the same pool and
	// the same destination, held in a string already.
	key := list[0].key
	for len(list) > 0 {
		uc := list[len(list)-1]
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		lc.nIdle--
		if time.Since(uc.idleAt) < laneIdleTimeout {
			lc.idle[key] = list
			return uc
		}
		go uc.c.Close()
	}
	delete(lc.idle, key)
	return nil
}

// put returns uc to the pool, or closes it past the pool's bounds.
func (lc *laneClient) put(uc *upConn) {
	uc.idleAt = time.Now()
	lc.mu.Lock()
	if lc.nIdle >= laneMaxIdle || len(lc.idle[uc.key]) >= laneMaxIdlePerHost {
		lc.mu.Unlock()
		uc.c.Close()
		return
	}
	if lc.idle == nil {
		lc.idle = map[laneKey][]*upConn{}
	}
	lc.idle[uc.key] = append(lc.idle[uc.key], uc)
	lc.nIdle++
	if lc.sweep == nil {
		lc.sweep = time.AfterFunc(laneIdleTimeout, lc.sweepIdle)
	}
	lc.mu.Unlock()
}

// sweepIdle closes connections idle past the timeout (the pool's only
// timer: one per client, not one per connection).
func (lc *laneClient) sweepIdle() {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.sweep = nil
	cutoff := time.Now().Add(-laneIdleTimeout)
	for key, list := range lc.idle {
		keep := list[:0]
		for _, uc := range list {
			if uc.idleAt.Before(cutoff) {
				uc.c.Close()
				lc.nIdle--
			} else {
				keep = append(keep, uc)
			}
		}
		clear(list[len(keep):])
		if len(keep) == 0 {
			delete(lc.idle, key)
		} else {
			lc.idle[key] = keep
		}
	}
	if lc.nIdle > 0 {
		lc.sweep = time.AfterFunc(laneIdleTimeout, lc.sweepIdle)
	}
}

// closeIdle closes every pooled connection (at shutdown).
func (lc *laneClient) closeIdle() {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for _, list := range lc.idle {
		for _, uc := range list {
			uc.c.Close()
		}
	}
	lc.idle, lc.nIdle = nil, 0
	if lc.sweep != nil {
		lc.sweep.Stop()
		lc.sweep = nil
	}
}

// upBody is a response body read from a pooled connection.
type upBody struct {
	rc     io.ReadCloser
	uc     *upConn
	lc     *laneClient
	keep   bool
	eof    bool
	closed bool
	// left is what remains of a Content-Length body (-1: unknown): a
	// reader that takes exactly that many bytes (io.CopyN, io.ReadFull)
	// never sees the EOF, yet the connection is free.
	left int64
	// w ties the request context's cancellation to the connection until
	// Close.
	w upWatch
}

func (b *upBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.rc.Read(p)
	if b.left >= 0 {
		if b.left -= int64(n); b.left == 0 {
			b.eof = true
		}
	}
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// Close returns the connection to the pool when the body was read to its
// end; otherwise it closes the connection first, so the body's Close does
// not drain an endless stream.
func (b *upBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	if !b.w.release() {
		b.keep = false
	}
	if !b.eof {
		b.uc.c.Close()
		_ = b.rc.Close()
		return nil
	}
	_ = b.rc.Close()
	if b.keep && b.uc.br.Buffered() == 0 {
		b.lc.put(b.uc)
	} else {
		b.uc.c.Close()
	}
	return nil
}
