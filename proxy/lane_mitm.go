package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/elazarl/goproxy"
)

// TLS interception on the lane. A CONNECT the proxy intercepts (a CA is
// configured) is authenticated by onConnect, the same code goproxy calls,
// once per tunnel; the lane then answers 200, runs the TLS server with
// the CA's leaf for the host (careload.go's cache), and reads the
// tunnel's requests with its own parser and request loop, each handled
// with the tunnel's session (the key is checked again per request against
// the vault's stamp of its last check, authcache.go, so revocation closes
// open tunnels too). The URL of a
// request inside is built as goproxy builds it: https://, the request's
// Host, the target. A request in the tunnel outside the lane's subset is
// handed, with the rest of the tunnel, to a net/http server that does the
// same (serveTunnelFallback). CONNECT without a CA (a plain tunnel) stays
// with goproxy.

// laneConnectTimeout bounds the TLS handshake inside a tunnel when the
// server has no ReadHeaderTimeout.
const laneConnectTimeout = 10 * time.Second

// tlsRecordHandshake is the first byte of a TLS ClientHello.
const tlsRecordHandshake = 0x16

// isConnectHead reports whether raw's request line is a CONNECT.
func isConnectHead(raw []byte) bool {
	return bytes.HasPrefix(raw, []byte("CONNECT "))
}

// intercept serves an intercepted CONNECT: it reports whether the
// connection goes on (as a tunnel, read by this loop); otherwise it is
// done (refused, handed over, or the handshake failed).
func (lc *laneConn) intercept(r *http.Request) bool {
	p := lc.s.p
	action := p.ca.current()
	if action == nil {
		return false
	}
	r.RemoteAddr = lc.remote
	gctx := &goproxy.ProxyCtx{Req: r, Proxy: p.gp}
	got, host := p.onConnect(r.URL.Host, gctx, action)
	if got != action {
		// Refused (onConnect logged it): its answer, then close.
		if gctx.Resp != nil {
			lc.writeResponse(r, gctx.Resp, false)
			_ = lc.bw.Flush()
		}
		return false
	}
	sess, _ := gctx.UserData.(*session)
	if sess == nil {
		return false
	}
	// goproxy's answer, byte for byte.
	lc.bw.WriteString("HTTP/1.1 200 OK\r\n\r\n")
	if lc.bw.Flush() != nil {
		return false
	}
	wait := lc.s.std.ReadHeaderTimeout
	if wait <= 0 {
		wait = laneConnectTimeout
	}
	_ = lc.c.SetReadDeadline(time.Now().Add(wait))
	if _, err := lc.br.Peek(1); err != nil {
		return false
	}
	// What the reader holds is the start of the tunnel's stream.
	buffered, _ := lc.br.Peek(lc.br.Buffered())
	pending := bytes.Clone(buffered)
	raw := &replayConn{Conn: lc.c, pending: pending}
	if pending[0] != tlsRecordHandshake {
		// Plain HTTP inside the tunnel (goproxy serves it as http://):
		// rare, left to the fallback.
		_ = lc.c.SetReadDeadline(time.Time{})
		lc.handedOver = lc.s.handoffTunnel(&tunnelConn{replayConn: *raw, sess: sess, scheme: "http", host: host})
		return false
	}
	cfg, err := action.TLSConfig(host, gctx)
	if err != nil {
		p.log.Warn("proxy: no certificate for an intercepted host", "err", err)
		return false
	}
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	tc := tls.Server(raw, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	err = tc.HandshakeContext(ctx)
	cancel()
	_ = lc.c.SetReadDeadline(time.Time{})
	if err != nil {
		return false
	}
	lc.rw, lc.mode, lc.sess, lc.host, lc.lastPOST = tc, modeTunnel, sess, host, false
	lc.tunnel.Store(true)
	lc.br.Reset(tc)
	lc.bw.Reset(tc)
	return true
}

// tunnelConn is a tunnel handed to the fallback server, with what the
// lane knew of it.
type tunnelConn struct {
	replayConn
	sess   *session
	scheme string
	host   string
}

type tunnelConnKey struct{}

func tunnelConnContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tunnelConn); ok {
		return context.WithValue(ctx, tunnelConnKey{}, tc)
	}
	return ctx
}

// handoffTunnel gives a tunnel to the fallback server; it reports whether
// the server took it.
func (s *LaneServer) handoffTunnel(tc *tunnelConn) bool {
	s.tunOnce.Do(func() {
		s.wg.Go(func() { _ = s.tun.Serve(s.tunFB) })
	})
	return s.tunFB.push(tc)
}

// serveTunnelFallback serves a request inside an intercepted tunnel that
// the lane did not read: what goproxy's MITM loop does with it (the URL
// from the request's Host, the tunnel's session), then relay.
func (s *LaneServer) serveTunnelFallback(w http.ResponseWriter, r *http.Request) {
	tc, _ := r.Context().Value(tunnelConnKey{}).(*tunnelConn)
	if tc == nil || tc.sess == nil {
		writeError(w, http.StatusBadRequest, CodeNotProxyRequest, "not an intercepted tunnel")
		return
	}
	if !r.URL.IsAbs() {
		host := r.Host
		if host == "" {
			host = tc.host
		}
		u, err := url.Parse(tc.scheme + "://" + host + r.URL.String())
		if err != nil {
			writeError(w, http.StatusBadRequest, CodeNotProxyRequest, "malformed request URL")
			return
		}
		r.URL = u
	} else {
		r.URL.Scheme = tc.scheme
	}
	_, resp := s.p.handle(r, tc.sess)
	relay(w, resp)
}
