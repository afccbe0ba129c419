package proxy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy engines: the lane (lane_*.go) or net/http's server alone.
const (
	// EngineLane serves the proxy's listener with the lane: its own accept
	// loop, request parser and response framing for the common subset of
	// HTTP/1.1 proxy requests, handing everything else to net/http.
	EngineLane = "lane"
	// EngineStd serves it with net/http's server alone (the way back).
	EngineStd = "std"
	// DefaultEngine is what `rotor serve` uses unless told otherwise.
	DefaultEngine = EngineLane
)

// Lane buffer sizes: one reader and one writer per connection, pooled.
const (
	laneReadBuf  = 4 << 10
	laneWriteBuf = 4 << 10
)

// LaneServer serves a proxy listener with the lane. Requests in its strict
// subset (lane_parse.go) are read, handed to the proxy's one request path
// (Proxy.handle: auth, rewrite, resolution, scrub, audit, log line,
// metrics) and answered by the lane's response writer (lane_write.go),
// all on the connection's goroutine. A connection whose request falls
// outside the subset (CONNECT, origin-form, HTTP/1.0, Expect, Upgrade,
// anything malformed) is handed over, with the bytes already read, to
// std: net/http's server with the proxy (goproxy for CONNECT) as its
// handler, for the rest of that connection.
type LaneServer struct {
	p   *Proxy
	std *http.Server
	fb  *handoffListener
	// tun serves requests inside intercepted tunnels that the lane does
	// not read itself (lane_mitm.go), fed by tunFB.
	tun     *http.Server
	tunFB   *handoffListener
	tunOnce sync.Once

	mu      sync.Mutex
	lns     map[net.Listener]struct{}
	conns   map[*laneConn]bool // true: idle, waiting for a request
	closing atomic.Bool
	wg      sync.WaitGroup
	stdOnce sync.Once
	// The watch (watchClients) runs from the first Serve until stopWatch.
	watchOnce, watchStopOnce sync.Once
	watchStop                chan struct{}
}

// NewLaneServer builds the lane for p. std is the net/http server for
// handed-over connections (its Handler is set to p when nil); its
// ReadHeaderTimeout and IdleTimeout apply to the lane too.
func (p *Proxy) NewLaneServer(std *http.Server) *LaneServer {
	if std.Handler == nil {
		std.Handler = p
	}
	s := &LaneServer{
		p: p, std: std, fb: newHandoffListener(), tunFB: newHandoffListener(),
		lns: map[net.Listener]struct{}{}, conns: map[*laneConn]bool{}, watchStop: make(chan struct{}),
	}
	s.tun = &http.Server{
		Handler: http.HandlerFunc(s.serveTunnelFallback), ReadHeaderTimeout: std.ReadHeaderTimeout,
		IdleTimeout: std.IdleTimeout, ErrorLog: std.ErrorLog, ConnContext: tunnelConnContext,
	}
	return s
}

// Serve accepts connections on ln until Shutdown or Close, like
// http.Server.Serve; it returns http.ErrServerClosed after those.
func (s *LaneServer) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.lns[ln] = struct{}{}
	// Started under mu, after the closing check: a Close that has set
	// closing finds these goroutines counted in wg before it waits (an
	// Add racing Wait from zero is a misuse the race detector reports).
	s.stdOnce.Do(func() {
		s.fb.addr = ln.Addr()
		s.wg.Go(func() { _ = s.std.Serve(s.fb) })
	})
	s.watchOnce.Do(func() { s.wg.Go(s.watchClients) })
	s.mu.Unlock()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			// As net/http: back off on temporary errors (EMFILE), so
			// running out of descriptors does not stop the proxy.
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		lc := &laneConn{c: c, s: s}
		lc.ctx = newLaneCtx()
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			lc.ctx.cancel()
			c.Close()
			return http.ErrServerClosed
		}
		s.conns[lc] = false
		s.wg.Add(1)
		s.mu.Unlock()
		go lc.serve()
	}
}

// Shutdown stops accepting, closes idle connections, waits for active
// ones to finish their request (they close after it), then shuts std
// down. Tunnels the lane intercepted are its connections like any other
// (idle ones close, active ones finish their request); those goproxy or
// the fallback hold are for Proxy.Drain.
func (s *LaneServer) Shutdown(ctx context.Context) error {
	s.closeListeners()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		s.mu.Lock()
		for lc, idle := range s.conns {
			if idle {
				lc.c.Close()
			}
		}
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			s.stopWatch()
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	err := s.std.Shutdown(ctx)
	if terr := s.tun.Shutdown(ctx); err == nil {
		err = terr
	}
	s.wg.Wait()
	return err
}

// Close closes the listeners and every connection now.
func (s *LaneServer) Close() error {
	s.closeListeners()
	s.mu.Lock()
	for lc := range s.conns {
		lc.c.Close()
	}
	s.mu.Unlock()
	s.stopWatch()
	err := s.std.Close()
	_ = s.tun.Close()
	s.wg.Wait()
	return err
}

// laneWatchInterval is how often watchClients looks at the clients of
// requests in progress.
const laneWatchInterval = time.Second

// watchClients ends the request of a client that hung up: net/http reads
// each connection in the background while its handler runs and cancels
// the request's context on EOF; the lane reads a client's connection only
// for the next request, so a request waiting on an upstream that stalls
// (before its head, or mid-body, where no write to the client comes to
// fail) held the upstream connection, a goroutine and buffers for a client
// long gone, until the upstream chose to close. Once a second it peeks
// (MSG_PEEK, nothing consumed) at the connections whose request has been
// in progress since the previous look, and cancels the context of those
// whose client has left; the lane's client and the transport end the
// exchange on it. A request shorter than a second costs nothing here.
func (s *LaneServer) watchClients() {
	t := time.NewTicker(laneWatchInterval)
	defer t.Stop()
	var look []*laneConn
	for {
		select {
		case <-s.watchStop:
			return
		case <-t.C:
		}
		look = look[:0]
		s.mu.Lock()
		if s.closing.Load() && len(s.conns) == 0 {
			s.mu.Unlock()
			return
		}
		for lc, idle := range s.conns {
			if idle {
				continue
			}
			if lc.ticks++; lc.ticks >= 2 {
				look = append(look, lc)
			}
		}
		s.mu.Unlock()
		// Outside the lock: a peek is a system call per connection. A
		// connection closed meanwhile reports gone; its context is done
		// with it anyway.
		for _, lc := range look {
			if clientGone(lc.c, lc.tunnel.Load()) {
				lc.ctx.cancel()
			}
		}
		clear(look)
	}
}

func (s *LaneServer) stopWatch() {
	s.watchStopOnce.Do(func() { close(s.watchStop) })
}

func (s *LaneServer) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing.Store(true)
	s.tunFB.Close()
	for ln := range s.lns {
		ln.Close()
	}
	s.lns = map[net.Listener]struct{}{}
}

// setIdle marks lc idle (waiting for a request) or active; it reports
// false when the server is closing and lc is idle: the connection closes.
func (s *LaneServer) setIdle(lc *laneConn, idle bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[lc] = idle
	lc.ticks = 0
	return !(idle && s.closing.Load())
}

func (s *LaneServer) forget(lc *laneConn) {
	s.mu.Lock()
	delete(s.conns, lc)
	s.mu.Unlock()
	s.wg.Done()
}

// laneConn is one client connection served by the lane.
type laneConn struct {
	// c is the client's connection; rw what requests are read from and
	// answered on: c, or the TLS server on it inside a tunnel.
	c      net.Conn
	rw     net.Conn
	s      *LaneServer
	br     *bufio.Reader
	bw     *bufio.Writer
	head   []byte
	remote string
	// mode is modeProxy, or modeTunnel once a CONNECT was intercepted;
	// sess is then the tunnel's session, host its CONNECT authority.
	mode laneMode
	sess *session
	host string
	// handedOver: another server owns the connection now.
	handedOver bool
	// lastPOST: net/http skips a CRLF some old clients send after a POST
	// body; the lane does too, so the next request parses the same.
	lastPOST bool
	// auth is the connection's last authentication (authcache.go).
	auth connAuth
	// busy is a request body another goroutine may still be reading from
	// br (a streamed body the transport sends): the connection's last
	// request, which did not finish. br is not reset and pooled before
	// that read ends (laneBody.stop).
	busy *laneBody
	// ctx is every request's context on this connection, cancelled when
	// watchClients finds the client gone, and when the connection ends.
	ctx *laneCtx
	// ticks counts watchClients' looks since the connection last went
	// idle or active (under s.mu).
	ticks int
	// tunnel: the connection carries an intercepted TLS tunnel (for
	// watchClients, which does not own mode).
	tunnel atomic.Bool
}

var (
	laneReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, laneReadBuf) }}
	laneWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, laneWriteBuf) }}
	laneHeads   = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}
)

func (lc *laneConn) serve() {
	defer func() {
		lc.ctx.cancel()
		if !lc.handedOver {
			lc.c.Close()
		}
		if lc.busy != nil {
			// The connection is closed: a read in progress ends now.
			lc.busy.stop()
		}
		lc.release()
		lc.s.forget(lc)
	}()
	lc.rw = lc.c
	lc.br = laneReaders.Get().(*bufio.Reader)
	lc.br.Reset(lc.c)
	lc.bw = laneWriters.Get().(*bufio.Writer)
	lc.bw.Reset(lc.c)
	hp := laneHeads.Get().(*[]byte)
	lc.head = (*hp)[:0]
	lc.remote = lc.c.RemoteAddr().String()
	std := lc.s.std
	// As net/http: the first request's head is due within the read-header
	// timeout from the accept (a silent connection is not held for the
	// idle timeout); the idle timeout is the wait between requests, and
	// the read-header timeout runs again from a later request's first byte.
	first := true
	for {
		if lc.br.Buffered() == 0 {
			if !lc.s.setIdle(lc, true) {
				return
			}
			d := idleTimeout(std)
			if first {
				d = headerTimeout(std)
			}
			if d > 0 {
				_ = lc.c.SetReadDeadline(time.Now().Add(d))
			}
			if _, err := lc.br.Peek(1); err != nil {
				return
			}
		}
		if !lc.s.setIdle(lc, false) {
			return
		}
		if d := headerTimeout(std); d > 0 && !first {
			_ = lc.c.SetReadDeadline(time.Now().Add(d))
		}
		first = false
		if lc.lastPOST {
			if peek, _ := lc.br.Peek(4); len(peek) > 0 {
				n := 0
				for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
					n++
				}
				_, _ = lc.br.Discard(n)
			}
		}
		raw, err := readLaneHead(lc.br, lc.head, laneMaxHead)
		lc.head = raw[:0]
		var hd laneHead
		if err == nil {
			hd, err = parseLaneHeadCtx(lc.ctx, raw, lc.mode)
			if err != nil && lc.mode == modeProxy && isConnectHead(raw) && lc.s.p.ca.current() != nil {
				if hd, err = parseLaneHeadMode(raw, modeConnect); err == nil && !hd.chunked && hd.req.ContentLength == 0 {
					if !lc.intercept(hd.req) {
						return
					}
					continue
				}
				err = errLaneHandoff
			}
		}
		if err != nil {
			if len(raw) == 0 {
				return // closed or timed out between requests
			}
			if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
				// The head outlived the read-header timeout: net/http
				// closes without an answer, and so does the lane. Handed
				// over, the bytes would start net/http's own timeout
				// again (a slowloris twice as long, then served).
				return
			}
			lc.handedOver = lc.handoff(raw)
			return
		}
		_ = lc.c.SetReadDeadline(time.Time{})
		// The request's context is the connection's (parseLaneHeadCtx):
		// watchClients cancels it when the client hangs up while the
		// request waits (net/http's backgroundRead does that for std).
		r := hd.req
		r.RemoteAddr = lc.remote
		var body *laneBody
		if hd.chunked || r.ContentLength > 0 {
			body = new(laneBody)
		}
		hd.attachBody(lc.br, body)
		lc.lastPOST = r.Method == http.MethodPost
		closeReq := r.Close
		_, resp := lc.s.p.handleConn(r, lc.sess, &lc.auth)
		// After handle: a shutdown that began meanwhile says Connection:
		// close on this response.
		keep := !closeReq && !lc.s.closing.Load()
		keep = lc.writeResponse(r, resp, keep) && keep
		if body != nil && !body.finish() {
			keep = false // the rest of an unread body is not the next request
			lc.busy = body
		}
		if err := lc.bw.Flush(); err != nil || !keep {
			return
		}
	}
}

// headerTimeout is how long a request head may take, as net/http has it:
// ReadHeaderTimeout, else ReadTimeout.
func headerTimeout(s *http.Server) time.Duration {
	if s.ReadHeaderTimeout > 0 {
		return s.ReadHeaderTimeout
	}
	return s.ReadTimeout
}

func idleTimeout(s *http.Server) time.Duration {
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return s.ReadTimeout
}

func (lc *laneConn) release() {
	if lc.br != nil {
		lc.br.Reset(nil)
		laneReaders.Put(lc.br)
		lc.br = nil
	}
	if lc.bw != nil {
		lc.bw.Reset(nil)
		laneWriters.Put(lc.bw)
		lc.bw = nil
	}
	if lc.head != nil && cap(lc.head) <= laneMaxHead {
		h := lc.head[:0]
		laneHeads.Put(&h)
		lc.head = nil
	}
}

// handoff gives the connection to std, with raw (the head read so far)
// and whatever the reader buffered replayed first. It reports whether std
// took it.
func (lc *laneConn) handoff(raw []byte) bool {
	pending := make([]byte, 0, len(raw)+lc.br.Buffered())
	pending = append(pending, raw...)
	if n := lc.br.Buffered(); n > 0 {
		b, _ := lc.br.Peek(n)
		pending = append(pending, b...)
	}
	_ = lc.c.SetReadDeadline(time.Time{})
	if lc.mode == modeTunnel {
		return lc.s.handoffTunnel(&tunnelConn{replayConn: replayConn{Conn: lc.rw, pending: pending}, sess: lc.sess, scheme: "https", host: lc.host})
	}
	return lc.s.fb.push(&replayConn{Conn: lc.c, pending: pending})
}

// replayConn is a connection whose first bytes were already read by the
// lane: Read returns them before reading the connection.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// handoffListener feeds handed-over connections to std.Serve.
type handoffListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func newHandoffListener() *handoffListener {
	return &handoffListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr {
	if l.addr == nil {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	}
	return l.addr
}
