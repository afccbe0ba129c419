package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/elazarl/goproxy"
	"github.com/prometheus/client_golang/prometheus"

	"rotor.sh/rotor/internal/logx"
	"rotor.sh/rotor/template"
	"rotor.sh/rotor/vault"
)

// Modes.
const (
	// ModeSidecar: beside the workers, usually on loopback.
	ModeSidecar = "sidecar"
	// ModeGateway: in front of many workers; Proxy-Authorization is always
	// required and the SSRF guard is on unless turned off explicitly.
	ModeGateway = "gateway"
)

// Defaults and bounds.
const (
	// BufferLimit: rewritten bodies up to this size are buffered whole, so
	// any failure is found before a byte goes upstream and Content-Length is
	// exact; larger bodies stream, chunked, in constant memory.
	BufferLimit = 1 << 20
	// DefaultResponseHeaderTimeout bounds the wait for an upstream's headers.
	DefaultResponseHeaderTimeout = 60 * time.Second
	// anonymousActor is the audit actor_id of unauthenticated loopback
	// clients served by --proxy-default-workspace.
	anonymousActor = "anonymous-loopback"
)

// Options configure New.
type Options struct {
	Vault      *vault.Vault
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Mode is ModeSidecar (default) or ModeGateway.
	Mode string
	// DefaultWorkspaceID, in sidecar mode, serves unauthenticated loopback
	// clients from this workspace.
	DefaultWorkspaceID string
	// RequireAllowedHosts refuses secrets without allowed_hosts.
	RequireAllowedHosts bool
	// SSRFGuard refuses destinations in private and special ranges.
	SSRFGuard bool
	// AllowCIDRs are destinations allowed despite the guard.
	AllowCIDRs []netip.Prefix
	// CA, if set, enables TLS interception of CONNECT; otherwise CONNECT
	// is tunneled untouched.
	CA *tls.Certificate
	// CACertFile and CAKeyFile, if set, are watched: when they appear or
	// change, the proxy loads them and intercepts with the new CA, without
	// a restart (checked on CONNECT at most every CAReloadInterval, and at
	// once on ReloadCA). CA, if also set, is what they held at start.
	CACertFile, CAKeyFile string
	// CAReloadInterval; DefaultCAReloadInterval when zero.
	CAReloadInterval time.Duration
	// UpstreamRoots verifies upstream TLS; nil means the system roots.
	UpstreamRoots *x509.CertPool
	// NoScrub turns off response scrubbing.
	NoScrub bool
	// ResponseHeaderTimeout; DefaultResponseHeaderTimeout when zero.
	ResponseHeaderTimeout time.Duration
	// InternalToken, if set, is the per-process credential of Rotor's own
	// dispatcher (see internal.go).
	InternalToken string
	// Engine is EngineLane (the default) or EngineStd. With the lane,
	// upstream requests go through the lane's client (lane_client.go)
	// and NewLaneServer serves listeners; with std, http.Transport sends
	// every request.
	Engine string
}

// Proxy is the resolving proxy. It is an http.Handler.
type Proxy struct {
	gp    *goproxy.ProxyHttpServer
	vault *vault.Vault
	log   *slog.Logger
	m     *metrics
	tr    *http.Transport
	// trs are tr's clones, one per upstream pool (trFor): upstreamPool ->
	// *poolTransport. nTrs counts them and trsSwept is when (unix ns) a
	// sweep last dropped the idle ones; sweepMu keeps sweeps one at a time.
	trs      sync.Map
	nTrs     atomic.Int64
	trsSwept atomic.Int64
	sweepMu  sync.Mutex
	// lc, with the lane engine, sends what it takes instead of tr.
	lc        *laneClient
	mode      string
	defaultWS string
	requireAH bool
	scrub     bool
	ca        *caReloader
	neg       negCache
	// scache keeps scrubbers per set of resolved values (scrubcache.go).
	scache *scrubCache

	internalToken string
	// inflight counts requests between onRequest and their summary line,
	// including those inside intercepted CONNECT tunnels, which
	// http.Server.Shutdown does not track.
	inflight atomic.Int64
}

// Drain waits until no proxied request is in flight, or ctx ends. Call it
// after the listener's http.Server.Shutdown.
func (p *Proxy) Drain(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for p.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("proxy: %d requests still in flight: %w", p.inflight.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// New builds a proxy.
func New(opts Options) (*Proxy, error) {
	if opts.Vault == nil {
		return nil, errors.New("proxy: no vault")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	switch opts.Mode {
	case "":
		opts.Mode = ModeSidecar
	case ModeSidecar, ModeGateway:
	default:
		return nil, fmt.Errorf("proxy: mode must be %s or %s", ModeSidecar, ModeGateway)
	}
	if opts.Mode == ModeGateway && opts.DefaultWorkspaceID != "" {
		return nil, errors.New("proxy: gateway mode always requires Proxy-Authorization; a default workspace is for sidecars")
	}
	if opts.ResponseHeaderTimeout <= 0 {
		opts.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	switch opts.Engine {
	case "":
		opts.Engine = DefaultEngine
	case EngineLane, EngineStd:
	default:
		return nil, fmt.Errorf("proxy: engine must be %s or %s", EngineLane, EngineStd)
	}
	p := &Proxy{
		vault: opts.Vault, log: opts.Logger, m: newMetrics(opts.Registerer), mode: opts.Mode,
		defaultWS: opts.DefaultWorkspaceID, requireAH: opts.RequireAllowedHosts, scrub: !opts.NoScrub,
		internalToken: opts.InternalToken, scache: newScrubCache(),
	}
	opts.Vault.OnCacheDrop(p.scache.drop)
	d := newDialer(guard{enabled: opts.SSRFGuard, allow: opts.AllowCIDRs})
	// Tuned for proxy load: Go's default of 2 idle connections per host
	// makes most requests open a new upstream connection under concurrency.
	p.tr = &http.Transport{
		Proxy: nil, // never chain to HTTP_PROXY: that may be us
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				p.m.conns.dialed.Add(1)
			}
			return c, err
		},
		TLSClientConfig:       &tls.Config{RootCAs: opts.UpstreamRoots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: opts.ResponseHeaderTimeout,
	}
	if opts.Engine == EngineLane {
		p.lc = &laneClient{dial: p.tr.DialContext, tlsConf: p.tr.TLSClientConfig, headerWait: opts.ResponseHeaderTimeout}
	}
	gp := goproxy.NewProxyHttpServer()
	gp.Logger = goproxyLogger{opts.Logger.Handler()}
	gp.Tr = p.tr
	gp.KeepAcceptEncoding = true // decided per request in rewrite
	// No gp.CertStore: leaves are cached per CA (careload.go), so a new CA
	// never serves a leaf of the old one.
	gp.ConnectDialWithReq = func(_ *http.Request, network, addr string) (net.Conn, error) {
		return d.DialContext(context.Background(), network, addr)
	}
	gp.NonproxyHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusBadRequest, CodeNotProxyRequest, "this is Rotor's proxy: send absolute-form requests (set HTTP_PROXY/HTTPS_PROXY to this address)")
	})
	if opts.CAReloadInterval <= 0 {
		opts.CAReloadInterval = DefaultCAReloadInterval
	}
	p.ca = &caReloader{certPath: opts.CACertFile, keyPath: opts.CAKeyFile, interval: opts.CAReloadInterval, log: opts.Logger}
	if (opts.CACertFile == "") != (opts.CAKeyFile == "") {
		return nil, errors.New("proxy: give both CA files or neither")
	}
	if opts.CA != nil {
		p.ca.cur.Store(newCAState(opts.CA))
		p.ca.stamps = [2]fileStamp{stampOf(opts.CACertFile), stampOf(opts.CAKeyFile)}
		p.ca.next.Store(time.Now().Add(opts.CAReloadInterval).UnixNano())
	}
	gp.OnRequest().HandleConnectFunc(func(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		return p.onConnect(host, ctx, p.ca.current())
	})
	gp.OnRequest().DoFunc(p.onRequest)
	p.gp = gp
	return p, nil
}

// ServeHTTP serves proxy requests. Absolute-form requests in clear are
// handled here (relay.go); goproxy serves CONNECT (tunnels and
// interception, and the requests inside intercepted tunnels) and
// non-proxy requests.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect || !r.URL.IsAbs() {
		p.gp.ServeHTTP(w, r)
		return
	}
	_, resp := p.handle(r, nil)
	relay(w, resp)
}

// ReloadCA loads the CA files now if they changed (SIGHUP).
func (p *Proxy) ReloadCA() { p.ca.reload() }

// CloseIdleConnections closes pooled upstream connections (at shutdown).
func (p *Proxy) CloseIdleConnections() {
	p.tr.CloseIdleConnections()
	p.trs.Range(func(_, pt any) bool {
		pt.(*poolTransport).tr.CloseIdleConnections()
		return true
	})
	if p.lc != nil {
		p.lc.closeIdle()
	}
}

// upstreamPool names whose requests may share a pooled upstream
// connection: one workspace's, and Rotor's own dispatch requests (which
// carry the workspace's callback credentials, beyond a member key's
// reach) apart from its workers'. A request's bytes go out right after
// the previous request's on a pooled connection; an upstream that did not
// read a body (a "CL.0" desync) takes that body as the start of the next
// request, so a shared pool let one tenant prefix another's request, with
// its resolved secrets, by a request head of its choosing (stored at the
// upstream where the first tenant reads it back).
type upstreamPool struct {
	workspace string
	dispatch  bool
}

// Bounds on the per-pool transports. A proxy serving many workspaces over
// months would otherwise keep a clone (and its idle connections until
// IdleConnTimeout) for every workspace it ever served. A sweep, run when a
// new pool is made, drops the clones not used since the previous sweep
// (second chance: a clone survives one sweep unused, so it goes after
// between one and two sweep periods idle). Sweeps run every
// poolSweepEvery, or once a second while more than maxPoolTransports exist:
// a soft limit, since only idle clones go (more busy pools than that keep
// theirs). A clone dropped by a sweep racing a request finishes that
// request; its connection then idles out (IdleConnTimeout).
const (
	poolSweepEvery    = 10 * time.Minute
	maxPoolTransports = 256
)

// poolTransport is one pool's transport and whether it was used since the
// last sweep.
type poolTransport struct {
	tr   *http.Transport
	used atomic.Bool
}

// trFor is the transport of pool: a clone of tr (same dialer, TLS and
// limits) with its own idle connections. A hit takes no lock and writes
// nothing but the used flag, and only when a sweep has cleared it.
func (p *Proxy) trFor(pool upstreamPool) *http.Transport {
	if v, ok := p.trs.Load(pool); ok {
		pt := v.(*poolTransport)
		if !pt.used.Load() {
			pt.used.Store(true)
		}
		return pt.tr
	}
	// A new pool: sweep first if due, so the new clone keeps its flag.
	now := time.Now().UnixNano()
	since := time.Duration(now - p.trsSwept.Load())
	if since >= poolSweepEvery || (p.nTrs.Load() >= maxPoolTransports && since >= time.Second) {
		p.sweepTransports(now)
	}
	pt := &poolTransport{tr: p.tr.Clone()}
	pt.used.Store(true)
	v, loaded := p.trs.LoadOrStore(pool, pt)
	if loaded {
		got := v.(*poolTransport)
		got.used.Store(true)
		return got.tr
	}
	p.nTrs.Add(1)
	return pt.tr
}

// sweepTransports drops the pool transports unused since the last sweep
// and closes their idle connections. A request that took one just before
// still completes on it; its connection then idles on the dropped clone
// until IdleConnTimeout closes it.
func (p *Proxy) sweepTransports(now int64) {
	if !p.sweepMu.TryLock() {
		return
	}
	defer p.sweepMu.Unlock()
	p.trsSwept.Store(now)
	p.trs.Range(func(k, v any) bool {
		pt := v.(*poolTransport)
		if !pt.used.Swap(false) && p.trs.CompareAndDelete(k, v) {
			p.nTrs.Add(-1)
			pt.tr.CloseIdleConnections()
		}
		return true
	})
}

// roundTrip sends a rewritten request upstream, on pool's connections:
// through the lane's client when it takes the request, otherwise through
// the transport.
func (p *Proxy) roundTrip(r *http.Request, pool upstreamPool) (*http.Response, error) {
	if p.lc != nil && p.lc.takes(r) {
		return p.lc.RoundTrip(r, pool)
	}
	return p.trFor(pool).RoundTrip(r)
}

// session is who is using the proxy, set at CONNECT for intercepted requests.
type session struct {
	actor vault.Actor
	// key is the API key the CONNECT presented ("" for the sidecar's
	// default workspace). Each intercepted request checks it again (a cached
	// check), so revoking a key also stops tunnels that are already open.
	key      string
	mitm     bool
	internal bool
	// auth is the tunnel's standing check of key (set at CONNECT when key
	// is not empty).
	auth *tunnelAuth
}

// Request ids are prx_ plus 16 hex digits: a random per-process prefix
// (4 bytes) and a counter (4 bytes, wrapping after 2^32 requests), so ids
// are unique within a process and across processes with near certainty,
// without a crypto/rand read per request.
var (
	reqIDPrefix [8]byte
	reqIDCount  atomic.Uint32
)

func init() {
	var b [4]byte
	_, _ = rand.Read(b[:])
	hex.Encode(reqIDPrefix[:], b[:])
	var c [4]byte
	_, _ = rand.Read(c[:])
	reqIDCount.Store(uint32(c[0])<<24 | uint32(c[1])<<16 | uint32(c[2])<<8 | uint32(c[3]))
}

func newRequestID() string {
	var b [4 + 16]byte
	copy(b[:], "prx_")
	copy(b[4:], reqIDPrefix[:])
	n := reqIDCount.Add(1)
	const digits = "0123456789abcdef"
	for i := range 8 {
		b[4+8+i] = digits[n>>(28-4*i)&0xf]
	}
	return string(b[:]) // the one allocation: the id outlives the request
}

// authenticate reads Proxy-Authorization: Bearer <key>, or Basic with the
// key as the password (what HTTP_PROXY=http://x:KEY@host gives).
func (p *Proxy) authenticate(r *http.Request) (session, error) {
	sess, _, err := p.authenticateStamped(r)
	return sess, err
}

// authenticateMemo is authenticate through the connection's memo (nil:
// none).
func (p *Proxy) authenticateMemo(r *http.Request, m *connAuth, now time.Time) (session, error) {
	if m == nil {
		return p.authenticate(r)
	}
	h := r.Header.Get("Proxy-Authorization")
	if h != "" && h == m.header && p.vault.StampValid(m.stamp, now) {
		return m.sess, nil
	}
	sess, stamp, err := p.authenticateStamped(r)
	if err != nil || sess.internal || sess.key == "" || !p.vault.StampValid(stamp, now) {
		*m = connAuth{}
	} else {
		*m = connAuth{header: h, sess: sess, stamp: stamp}
	}
	return sess, err
}

// authenticateStamped is authenticate with the vault's stamp when the
// session is a key's (the zero stamp otherwise).
func (p *Proxy) authenticateStamped(r *http.Request) (session, vault.AuthStamp, error) {
	h := r.Header.Get("Proxy-Authorization")
	if h == "" {
		if p.defaultWS != "" && isLoopback(r.RemoteAddr) {
			return session{actor: vault.Actor{KeyID: anonymousActor, WorkspaceID: p.defaultWS, Role: vault.RoleMember}}, vault.AuthStamp{}, nil
		}
		return session{}, vault.AuthStamp{}, fmt.Errorf("%w: send Proxy-Authorization: Bearer <Rotor API key>", ErrProxyAuth)
	}
	scheme, cred, _ := strings.Cut(h, " ")
	var key string
	switch strings.ToLower(scheme) {
	case "bearer":
		key = strings.TrimSpace(cred)
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		if err != nil {
			return session{}, vault.AuthStamp{}, fmt.Errorf("%w: malformed Basic credentials", ErrProxyAuth)
		}
		_, key, _ = strings.Cut(string(raw), ":")
	default:
		return session{}, vault.AuthStamp{}, fmt.Errorf("%w: use Bearer, or Basic with the API key as password", ErrProxyAuth)
	}
	if p.isInternalToken(key) {
		ws := r.Header.Get(HeaderInternalWorkspace)
		if ws == "" {
			return session{}, vault.AuthStamp{}, fmt.Errorf("%w: dispatch request without a workspace", ErrProxyAuth)
		}
		return session{actor: vault.Actor{KeyID: internalActor(r.Header), WorkspaceID: ws, Role: vault.RoleMember}, internal: true}, vault.AuthStamp{}, nil
	}
	a, stamp, err := p.authKeyStamped(r.Context(), key)
	return session{actor: a, key: key}, stamp, err
}

func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

func (p *Proxy) onConnect(host string, ctx *goproxy.ProxyCtx, mitm *goproxy.ConnectAction) (*goproxy.ConnectAction, string) {
	start := time.Now()
	if h, _, err := net.SplitHostPort(host); err == nil {
		if err := checkHost(h); err != nil {
			status, code := classify(err)
			ctx.Resp = errorResponse(ctx.Req, status, code, err)
			p.finish(logEntry{start: start, id: newRequestID(), method: http.MethodConnect, host: boundField(host, maxLogRefusedHost), status: status, code: code, outcome: OutcomeRefused})
			return goproxy.RejectConnect, host
		}
	}
	sess, err := p.authenticate(ctx.Req)
	actor := sess.actor
	if err != nil {
		status, code := classify(err)
		ctx.Resp = errorResponse(ctx.Req, status, code, err)
		p.finish(logEntry{start: start, id: newRequestID(), method: http.MethodConnect, host: host, status: status, code: code, outcome: OutcomeRefused})
		return goproxy.RejectConnect, host
	}
	sess.mitm = mitm != nil
	if sess.key != "" {
		sess.auth = new(tunnelAuth)
	}
	ctx.UserData = &sess
	if mitm != nil {
		return mitm, host
	}
	p.finish(logEntry{start: start, id: newRequestID(), method: http.MethodConnect, host: host, status: http.StatusOK, outcome: OutcomeTunneled, actor: actor})
	return goproxy.OkConnect, host
}

// reqState is one proxied request.
type reqState struct {
	p     *Proxy
	ctx   context.Context
	id    string
	actor vault.Actor
	host  string
	// scheme and port of the destination, for allowed_hosts entries that
	// name them (port 0: the scheme's default).
	scheme string
	port   int
	// resolved holds each secret resolved for this request (a handful at
	// most, so a slice beats a map); appended under mu, only by
	// resolveName.
	resolved []resolvedSecret
	// mu guards resolved, names and extras: a streamed body resolves on
	// the transport's goroutine (see secretNames, scrubberNow).
	mu    sync.Mutex
	names []string
	// rf is resolveName as a ResolveFunc, made once per request.
	rf template.ResolveFunc
	// extras are scrub forms beyond each value's own (Basic credentials
	// joined from a user name and a password), each after the first
	// `after` resolved values' forms.
	extras []extraForms
	mitm   bool
	// body is the streamed body of a body past BufferLimit.
	body *pooledBody
	// buffered: the body was read and rewritten whole; bodyBytes is what
	// goes upstream (valid until the request's body is closed).
	buffered  bool
	bodyBytes []byte
	mem       memBody
	// With a streamed body, the summary line waits for both ends (under
	// mu): the response body's (with its entry) and the request body's.
	respDone, bodyDone bool
	lineEntry          logEntry
	// extra goes into audit rows (dispatch: job id and attempt).
	extra map[string]string
	// The first few resolved values and names live in the request's state
	// itself: no growth of the lists for the usual one to four secrets.
	resolvedBuf [scrubKeyLen]resolvedSecret
	namesBuf    [scrubKeyLen]string
	// lb is the response body wrapper (handle's last step), allocated with
	// the state.
	lb loggedBody
	// arena holds the rewritten URL parts and header values
	// (rewriteString); arenaBuf is its first backing array, allocated with
	// the state: the load's rewritten path, query and Authorization value
	// take about 80 bytes.
	arena    []byte
	arenaBuf [192]byte
}

type resolvedSecret struct {
	name  string
	value vault.Plaintext
	// cacheID is the vault's cached copy (vault.Resolved.CacheID).
	cacheID uint64
}

type extraForms struct {
	after int
	forms []scrubPattern
}

// resolveName is the rewriter's ResolveFunc for every position (st.rf, one
// method value per request): each name is resolved (and audited) once per
// request.
func (st *reqState) resolveName(name string) ([]byte, error) {
	for _, r := range st.resolved {
		if r.name == name {
			return r.value.Bytes(), nil
		}
	}
	r, err := st.p.vault.Resolve(st.ctx, vault.ResolveRequest{
		WorkspaceID: st.actor.WorkspaceID, Name: name, ActorID: st.actor.KeyID, Host: st.host,
		Scheme: st.scheme, Port: st.port,
		RequireAllowedHosts: st.p.requireAH, RequestID: st.id, Extra: st.extra,
	})
	if err != nil {
		st.p.m.failures.WithLabelValues(failureReason(err)).Inc()
		return nil, err
	}
	v := r.Value
	st.mu.Lock()
	st.resolved = append(st.resolved, resolvedSecret{name, v, r.CacheID})
	st.names = append(st.names, name)
	st.mu.Unlock()
	return v.Bytes(), nil
}

// addExtraForms adds forms to scrub beyond the values' own.
func (st *reqState) addExtraForms(f []scrubPattern) {
	st.mu.Lock()
	st.extras = append(st.extras, extraForms{len(st.resolved), f})
	st.mu.Unlock()
}

// scrubberNow is the scrubber of every value resolved so far (nil when no
// form is long enough to scrub), and how many values it covers. Every form
// of each value, whatever position it went to: an upstream may reflect a
// value it got in the query inside a JSON body. Built once per set of
// values and kept in the proxy's scrubCache while the vault keeps those
// values cached.
func (st *reqState) scrubberNow() (*scrubber, int, error) {
	st.mu.Lock()
	rs := st.resolved[:len(st.resolved):len(st.resolved)]
	extras := st.extras[:len(st.extras):len(st.extras)]
	st.mu.Unlock()
	var k scrubKey
	cacheable := len(extras) == 0 && len(rs) <= scrubKeyLen
	for i, r := range rs {
		if !cacheable || r.cacheID == 0 {
			cacheable = false
			break
		}
		k[i] = r.cacheID
	}
	if cacheable {
		if sc := st.p.scache.get(k); sc != nil {
			return sc, len(rs), nil
		}
	}
	var forms []scrubPattern
	for i, r := range rs {
		for _, x := range extras {
			if x.after == i {
				forms = append(forms, x.forms...)
			}
		}
		forms = append(forms, valueForms(r.name, r.value.Bytes())...)
	}
	for _, x := range extras {
		if x.after >= len(rs) {
			forms = append(forms, x.forms...)
		}
	}
	sc, err := newScrubberBounded(forms)
	if err != nil {
		return nil, 0, err
	}
	if cacheable && sc != nil {
		ws := st.actor.WorkspaceID
		st.p.scache.put(k, sc, func() bool {
			for _, r := range rs {
				if !st.p.vault.CacheLive(ws, r.name, r.cacheID) {
					return false
				}
			}
			return true
		})
	}
	return sc, len(rs), nil
}

// secretNames is the names resolved so far. A streamed body resolves on the
// transport's goroutine while the handler reads this; the slice returned
// is capped, so later appends never touch what the caller holds.
func (st *reqState) secretNames() []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.names) == 0 {
		return nil // as before names had a buffer: the log line says null
	}
	return st.names[:len(st.names):len(st.names)]
}

// onRequest serves the requests goproxy hands over: those inside
// intercepted tunnels, with the tunnel's session.
func (p *Proxy) onRequest(r *http.Request, gctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	s, _ := gctx.UserData.(*session)
	return p.handle(r, s)
}

// handle answers one proxied request; s is the tunnel's session, or nil.
// The response is never nil: refusals are answered by the proxy itself.
func (p *Proxy) handle(r *http.Request, s *session) (*http.Request, *http.Response) {
	return p.handleConn(r, s, nil)
}

// handleConn is handle with the connection's authentication memo (nil:
// none; used only when s is nil).
func (p *Proxy) handleConn(r *http.Request, s *session, memo *connAuth) (*http.Request, *http.Response) {
	start := time.Now()
	p.inflight.Add(1)
	st := &reqState{p: p, ctx: r.Context(), id: newRequestID(), host: r.URL.Hostname()}
	st.resolved, st.names = st.resolvedBuf[:0], st.namesBuf[:0]
	st.rf = st.resolveName
	entry := logEntry{start: start, id: st.id, method: r.Method, host: r.URL.Host, counted: true}
	if err := checkHost(st.host); err != nil {
		// Before authentication, resolution and the audit trail: nothing
		// keeps a host DNS could never resolve.
		entry.host = boundField(entry.host, maxLogRefusedHost)
		return r, p.refuse(r, entry, err)
	}
	var internal bool
	if s != nil {
		st.actor, st.mitm = s.actor, s.mitm
		if s.key != "" {
			if err := p.recheck(r.Context(), s, start); err != nil {
				return r, p.refuse(r, entry, err)
			}
		}
	} else {
		sess, err := p.authenticateMemo(r, memo, start)
		if err != nil {
			stripInternal(r.Header)
			return r, p.refuse(r, entry, err)
		}
		st.actor, internal = sess.actor, sess.internal
	}
	entry.actor, entry.mitm = st.actor, st.mitm
	var in internalReq
	if internal {
		in = readInternal(r.Header)
		st.extra = in.auditExtra()
		if in.scheme == "https" && r.URL.Scheme == "http" {
			r.URL.Scheme = "https"
		}
	}
	stripInternal(r.Header)
	removeHopByHop(r.Header, false)
	// After applying the dispatcher's scheme: a callback sent over TLS
	// matches https:// entries.
	st.scheme = r.URL.Scheme
	st.port, _ = strconv.Atoi(r.URL.Port())
	out, err := st.rewrite(r)
	if err == nil && internal {
		err = st.applyInternal(out, in)
	}
	entry.secrets = st.secretNames()
	var sc *scrubber
	scValues := 0
	if err == nil && len(st.names) > 0 && p.scrub {
		// Built before anything is sent: a request whose response could
		// not be scrubbed in bounded memory is refused.
		sc, scValues, err = st.scrubberNow()
	}
	if err != nil {
		return r, p.refuse(r, entry, err)
	}
	resp, err := p.roundTrip(out, upstreamPool{st.actor.WorkspaceID, internal})
	if err != nil {
		entry.secrets = st.secretNames()
		if berr := st.body.Err(); berr != nil {
			// A streamed body failed after sending began: the upstream
			// request was aborted mid-body; report why.
			err = berr
		} else if !errors.Is(err, ErrDestinationBlocked) {
			err = fmt.Errorf("%w: %v", errUpstream, err)
		} else if len(entry.secrets) > 0 {
			// Resolved but never sent: the trail says so.
			if aerr := p.vault.RecordDenied(r.Context(), vault.DeniedDelivery{
				WorkspaceID: st.actor.WorkspaceID, ActorID: st.actor.KeyID, Names: entry.secrets, Host: st.host,
				RequestID: st.id, Reason: vault.DenyDestinationBlocked, Extra: st.extra,
			}); aerr != nil {
				p.log.Warn("audit of a blocked destination failed", LogFieldRequestID, entry.id, "err", aerr)
			}
		}
		entry.outcome = OutcomeFailed
		return r, p.refuse(r, entry, st.withheld(err))
	}
	p.m.conns.trips.Add(1)
	names := st.secretNames()
	entry.outcome = OutcomeForwarded
	if len(names) > 0 {
		entry.outcome = OutcomeResolved
	}
	entry.status = resp.StatusCode
	removeOwned(resp.Header)
	removeHopByHop(resp.Header, true)
	removeOwned(resp.Trailer)
	if len(names) > 0 && p.scrub {
		// Secrets went into this request: the response is read before the
		// worker sees it, or not relayed at all.
		if len(names) > scValues {
			// A streamed body resolved more secrets after the scrubber was
			// built: their echoes are scrubbed too. Past the bound, the
			// response is not relayed (the request has gone: fail closed).
			var err error
			if sc, _, err = st.scrubberNow(); err != nil {
				resp.Body.Close()
				entry.outcome = OutcomeFailed
				return r, p.refuse(r, entry, err)
			}
		}
		if resp.StatusCode == http.StatusPartialContent {
			// Range was not sent (rewrite), or went out before a streamed
			// body resolved a secret: a slice of the representation
			// cannot be scanned for a value cut at its edges.
			err = fmt.Errorf("%w: a partial (206) response", ErrResponseUnscannable)
		} else {
			err = decodeResponse(resp)
		}
		if err != nil {
			resp.Body.Close()
			entry.outcome = OutcomeFailed
			return r, p.refuse(r, entry, st.withheld(err))
		}
		if sc != nil {
			entry.scrubbed = st.scrubResponse(resp, sc)
		}
	}
	if p.scrub && st.body != nil && resp.Body != nil && resp.Body != http.NoBody {
		// The request body still streams: a value it resolves from now on
		// may come back in this body, which is scrubbed for it too
		// (scrublate.go). Its length can change: no Content-Length.
		covered := 0
		if len(names) > 0 {
			covered = len(names)
		}
		resp.Body = newLateScrubReader(resp, st, sc, covered)
		resp.ContentLength = -1
		resp.Header.Del("Content-Length")
	}
	st.lb = loggedBody{ReadCloser: resp.Body, p: p, entry: entry, resp: resp, sc: sc, st: st}
	resp.Body = &st.lb
	return out, resp
}

// rewrite returns the outgoing request with every reference resolved.
func (st *reqState) rewrite(r *http.Request) (*http.Request, error) {
	// Rewritten in place: goproxy hands the request over to this handler, and
	// a refused request is answered, never sent.
	out := r
	u := out.URL
	for _, h := range []string{u.Host, out.Host} {
		if strings.IndexByte(h, '$') < 0 {
			continue // nothing a raw reference could start with
		}
		if _, n, err := template.RewriteString(h, template.ContextRaw, func(string) ([]byte, error) { return nil, ErrReferenceInHost }); err != nil || n > 0 {
			if errors.Is(err, template.ErrReference) {
				return nil, err
			}
			return nil, ErrReferenceInHost
		}
	}
	// The escaped path always decodes to Path (EscapedPath returns RawPath
	// only when it does), and a reference starts with '$' however it is
	// encoded: a Path without one has nothing to rewrite, and its escaped
	// form is never built.
	if strings.IndexByte(u.Path, '$') >= 0 {
		esc := u.RawPath
		if esc == "" {
			// What EscapedPath returns without a RawPath (a Path with a
			// '$' is never "*"), built in the arena.
			esc = st.escapePath(u.Path)
		} else {
			esc = u.EscapedPath()
		}
		np, n, err := st.rewriteString(esc, template.ContextPath)
		if err != nil {
			return nil, err
		}
		switch {
		case n == 0:
		case cleanPath(np):
			// Nothing in it is escaped or needs escaping: Path is np and
			// EscapedPath gives np back without a RawPath (which it would
			// unescape again to check on every use).
			u.Path, u.RawPath = np, ""
		default:
			dec, err := url.PathUnescape(np)
			if err != nil {
				return nil, fmt.Errorf("%w: rewritten path is not valid", template.ErrReference)
			}
			u.Path, u.RawPath = dec, np
		}
	}
	if u.RawQuery != "" {
		q, _, err := st.rewriteString(u.RawQuery, template.ContextQuery)
		if err != nil {
			return nil, err
		}
		u.RawQuery = q
	}
	if u.User != nil {
		name := u.User.Username()
		pass, hasPass := u.User.Password()
		// The transport sends userinfo as Basic credentials.
		nn, np, err := st.rewriteUserPass(name, pass, name+":"+pass)
		if err != nil {
			return nil, err
		}
		if hasPass {
			u.User = url.UserPassword(nn, np)
		} else {
			u.User = url.User(nn)
		}
	}
	for k, vs := range out.Header {
		for i, v := range vs {
			if k == "Authorization" && isBasic(v) {
				// Clients send URL userinfo as Basic credentials: resolve
				// references inside them.
				nv, err := st.rewriteBasic(v)
				if err != nil {
					return nil, err
				}
				vs[i] = nv
				continue
			}
			if strings.IndexByte(v, '$') < 0 {
				continue
			}
			nv, _, err := st.rewriteString(v, template.ContextHeader)
			if err != nil {
				return nil, err
			}
			vs[i] = nv // in place: vs is the map's slice
		}
	}
	if err := st.rewriteBody(out); err != nil {
		return nil, err
	}
	if len(st.names) > 0 && st.p.scrub {
		// Let the transport negotiate (and undo) compression, so the
		// response can be scrubbed.
		// (delete: the keys are canonical, Del would canonicalise them
		// again.)
		delete(out.Header, "Accept-Encoding")
		// A server that honours Range returns an echo a few bytes at a
		// time, no slice holding a whole value for the scrubber to find,
		// and the client joins them: the whole response is asked for.
		delete(out.Header, "Range")
		delete(out.Header, "If-Range")
	}
	return out, nil
}

// rewriteString is template.RewriteString for the request's URL and
// header values, into st.arena: one buffer for all of them (inside the
// request's state while they fit) rather than an allocation each. The
// strings returned are views of the arena, which is only ever appended to:
// nothing writes over bytes once they have been handed out. s itself comes
// back when nothing in it was replaced.
func (st *reqState) rewriteString(s string, c template.Context) (string, int, error) {
	if st.arena == nil {
		st.arena = st.arenaBuf[:0]
	}
	start := len(st.arena)
	out, n, err := template.AppendRewriteString(st.arena, s, c, st.rf)
	if err != nil || n == 0 {
		// n == 0: what was appended, if anything, is s itself.
		return s, n, err
	}
	st.arena = out
	if len(out) == start {
		return "", n, nil
	}
	return unsafe.String(&out[start], len(out)-start), n, nil
}

// escapePath is url.PathEscape's whole-path twin as EscapedPath uses it
// (TestEscapePathLikeNetURL): every byte cleanPath does not keep, and '%',
// as %XX. A path needing no escapes is returned as it is; otherwise the
// escaped form is appended to the arena, which the rewrite of it then
// appends past (its input is never written over).
func (st *reqState) escapePath(p string) string {
	if cleanPath(p) {
		return p
	}
	if st.arena == nil {
		st.arena = st.arenaBuf[:0]
	}
	start := len(st.arena)
	b := st.arena
	for i := 0; i < len(p); i++ {
		if c := p[i]; cleanPathByte(c) {
			b = append(b, c)
		} else {
			b = append(b, '%', upperHex[c>>4], upperHex[c&0xf])
		}
	}
	st.arena = b
	return unsafe.String(&b[start], len(b)-start)
}

// cleanPath reports whether p holds only bytes an escaped path keeps as
// they are (url.PathEscape's unreserved and path-reserved characters, no
// '%'): p is then its own escaped and unescaped form.
func cleanPath(p string) bool {
	for i := 0; i < len(p); i++ {
		if !cleanPathByte(p[i]) {
			return false
		}
	}
	return true
}

// upperHex is how net/url writes an escaped byte's digits.
const upperHex = "0123456789ABCDEF"

// cleanPathByte reports whether net/url leaves c as it is in a path
// (its shouldEscape(c, encodePath) is false).
func cleanPathByte(c byte) bool { return cleanPathBytes[c] }

// cleanPathBytes: letters, digits, "-_.~" and the path's reserved
// characters "$&+,/:;=@" (a table: escapePath looks up every byte).
var cleanPathBytes = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.~$&+,/:;=@", byte(c)) >= 0
	}
	return t
}()

// rewriteBasic resolves references in Basic credentials (user:password).
func (st *reqState) rewriteBasic(v string) (string, error) {
	raw, user, pass, ok := basicCredentials(v)
	if !ok {
		return v, nil
	}
	nu, np, err := st.rewriteUserPass(user, pass, raw)
	if err != nil {
		return "", err
	}
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(nu+":"+np)), nil
}

// rewriteUserPass resolves a user name and password (URL userinfo, or Basic
// credentials; raw is the pair as the client sent it). A user name a secret
// gives cannot hold ':' (the pair would split elsewhere). With scrubbing
// on, the pair's Basic forms are added to what responses are scrubbed of.
func (st *reqState) rewriteUserPass(user, pass, raw string) (nu, np string, err error) {
	nu, n1, err := template.RewriteString(user, template.ContextUserinfo, st.rf)
	if err != nil {
		return "", "", err
	}
	if n1 > 0 && strings.Contains(nu, ":") {
		return "", "", fmt.Errorf("%w: a user name from a secret cannot contain ':'", template.ErrValueRefused)
	}
	np, n2, err := template.RewriteString(pass, template.ContextUserinfo, st.rf)
	if err != nil {
		return "", "", err
	}
	if n1+n2 > 0 && st.p.scrub {
		st.addExtraForms(basicForms(nu+":"+np, raw))
	}
	return nu, np, nil
}

// bodyContext picks the rewrite context from Content-Type.
func bodyContext(ct string) template.Context {
	// The usual values, exactly as clients send them, without
	// mime.ParseMediaType's lower-casing and parameter map.
	switch ct {
	case "application/json", "application/json; charset=utf-8", "application/json;charset=utf-8", "application/json; charset=UTF-8":
		return template.ContextJSON
	case "application/x-www-form-urlencoded":
		return template.ContextForm
	case "", "text/plain", "text/plain; charset=utf-8", "application/octet-stream":
		return template.ContextRaw
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return template.ContextRaw
	}
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return template.ContextJSON
	case mt == "application/x-www-form-urlencoded":
		return template.ContextForm
	}
	return template.ContextRaw
}

// rewriteBody resolves the references in out's body. A body of up to
// BufferLimit bytes is read whole first and rewritten in one pass
// (template.AppendRewrite): nothing goes upstream until every reference in
// it resolved, and it leaves with an exact Content-Length. A body with
// nothing that could start a reference (no '$', nor '%' in a form) leaves
// as the client sent it, without a copy. A larger body, or one whose
// values make it grow past BufferLimit, streams (streamBody).
func (st *reqState) rewriteBody(out *http.Request) error {
	if out.Body == nil || out.Body == http.NoBody {
		return nil
	}
	if ce := out.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return nil // compressed bodies pass untouched (documented)
	}
	ctxt := bodyContext(out.Header.Get("Content-Type"))
	if out.ContentLength > BufferLimit {
		return st.streamBody(out, ctxt, nil)
	}
	raw, rawp, whole, err := readBody(out)
	if err != nil {
		return err
	}
	if !whole {
		return st.streamBody(out, ctxt, rawp)
	}
	if !template.MayRewrite(raw, ctxt) {
		// Nothing that could start a reference: the client's bytes go,
		// and no second buffer is taken for a rewrite that cannot happen.
		st.setBody(out, raw, rawp)
		return nil
	}
	outp := getBodyBuf(int64(len(raw)) + 256)
	rewritten, n, err := template.AppendRewrite((*outp)[:0], raw, ctxt, st.rf, BufferLimit)
	*outp = rewritten
	switch {
	case err == nil:
		// The rewritten copy goes; the client's bytes are done with.
		putBodyBuf(rawp)
		st.p.m.rewritten.Add(float64(n.Bytes))
		st.setBody(out, rewritten, outp)
	case errors.Is(err, template.ErrOutputLimit):
		// Values far longer than their references: rewrite it again as
		// a stream (the names resolved so far are not resolved twice).
		putBodyBuf(outp)
		return st.streamBody(out, ctxt, rawp)
	default:
		putBodyBuf(outp)
		putBodyBuf(rawp)
		return err
	}
	return nil
}

// readBody reads out's body into a pooled buffer (*rawp, which is raw), up
// to BufferLimit bytes: whole is true when the body ended within them,
// false when raw holds BufferLimit+1 bytes and the rest is still in
// out.Body. The buffer is the caller's to give back; on an error, which
// wraps errBody (the client's body failed), it is already back.
func readBody(out *http.Request) (raw []byte, rawp *[]byte, whole bool, err error) {
	rawp = getBodyBuf(out.ContentLength)
	raw, whole, err = readWhole((*rawp)[:0], out.Body, BufferLimit)
	*rawp = raw
	if err != nil {
		putBodyBuf(rawp)
		if !errors.Is(err, errBody) {
			err = fmt.Errorf("%w: %v", errBody, err)
		}
		return nil, nil, false, err
	}
	return raw, rawp, whole, nil
}

// setBody makes body (held in the pooled *bp) out's whole body, with its
// exact length.
func (st *reqState) setBody(out *http.Request, body []byte, bp *[]byte) {
	st.buffered, st.bodyBytes = true, body
	if out.ContentLength != int64(len(body)) {
		out.ContentLength = int64(len(body))
		cl := strconv.Itoa(len(body))
		if vs := out.Header["Content-Length"]; len(vs) == 1 {
			vs[0] = cl // the request's own slice (no new one)
		} else {
			out.Header.Set("Content-Length", cl)
		}
	}
	out.TransferEncoding = nil
	src := out.Body
	if len(body) == 0 {
		putBodyBuf(bp)
		_ = src.Close()
		out.Body = http.NoBody
		return
	}
	// In the request's state: one allocation fewer per body.
	st.mem = memBody{b: body, bp: bp, src: src}
	out.Body = &st.mem
}

// streamBody rewrites out's body through the streaming Rewriter: the first
// BufferLimit bytes of its output before anything is sent (a reference
// there that fails is refused, and a body that turns out no longer than
// that goes whole after all), the rest as the transport sends it, chunked,
// in constant memory. rawp, if set, holds the bytes of the body already
// read; they come first.
func (st *reqState) streamBody(out *http.Request, ctxt template.Context, rawp *[]byte) error {
	src := out.Body
	var in io.Reader = src
	if rawp != nil {
		in = io.MultiReader(bytes.NewReader(*rawp), src)
	}
	rw := template.NewRewriter(clientBody{in}, ctxt, st.rf)
	prep := getBodyBuf(BufferLimit)
	pre, whole, err := readWhole((*prep)[:0], rw, BufferLimit)
	*prep = pre
	if err != nil {
		putBodyBuf(prep)
		putBodyBuf(rawp)
		return err
	}
	if whole {
		putBodyBuf(rawp)
		st.p.m.rewritten.Add(float64(rw.ReplacedBytes()))
		st.setBody(out, pre, prep)
		return nil
	}
	st.body = &pooledBody{r: io.MultiReader(bytes.NewReader(pre), rw), rw: rw, bufs: [2]*[]byte{prep, rawp}, st: st, src: src}
	out.Body = st.body
	out.ContentLength = -1
	out.Header.Del("Content-Length")
	return nil
}

// readWhole appends what src holds to buf, up to limit bytes: whole is
// true when src ended within them (buf is then all of it), false when it
// holds more (buf has limit+1 bytes of it; the rest is still in src).
func readWhole(buf []byte, src io.Reader, limit int) (_ []byte, whole bool, err error) {
	empty := 0
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(max(cap(buf), 512), limit+1-len(buf)))
		}
		n, err := src.Read(buf[len(buf):min(cap(buf), limit+1)])
		buf = buf[:len(buf)+n]
		switch {
		case len(buf) > limit:
			return buf, false, nil
		case err == io.EOF:
			return buf, true, nil
		case err != nil:
			return buf, false, err
		case n == 0:
			// A reader that never ends nor errs; as io.ReadAtLeast would
			// spin, this gives up.
			if empty++; empty > 100 {
				return buf, false, io.ErrNoProgress
			}
		default:
			empty = 0
		}
	}
}

// bodyBufs recycles request body buffers (*[]byte).
var bodyBufs sync.Pool

// getBodyBuf returns a pooled buffer, with room for n bytes and one more
// when n is a length that fits the buffer (the read that finds the end).
func getBodyBuf(n int64) *[]byte {
	want := 4 << 10
	if n > 0 && n <= BufferLimit {
		want = int(n) + 1
	}
	if bp, ok := bodyBufs.Get().(*[]byte); ok {
		if cap(*bp) >= want {
			*bp = (*bp)[:0]
			return bp
		}
		bodyBufs.Put(bp)
	}
	b := make([]byte, 0, want)
	return &b
}

func putBodyBuf(bp *[]byte) {
	if bp == nil || cap(*bp) > 2*BufferLimit+64<<10 {
		return
	}
	*bp = (*bp)[:0]
	bodyBufs.Put(bp)
}

// clientBody tags read errors of the client's body, so they are told apart
// from rewrite failures.
type clientBody struct{ r io.Reader }

func (c clientBody) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: %v", errBody, err)
	}
	return n, err
}

// memBody is a request body held whole in memory, rewritten or as the
// client sent it. The lane client writes its bytes at once (writeTo); its
// buffer goes back to the pool at Close, after which nothing reads it:
// Read and Close are serialised, so a transport that still reads after
// closing gets an error, never bytes of the buffer's next request.
type memBody struct {
	mu   sync.Mutex
	b    []byte
	off  int
	bp   *[]byte
	src  io.Closer
	done bool
}

func (b *memBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.off == len(b.b) {
		return 0, io.EOF
	}
	n := copy(p, b.b[b.off:])
	b.off += n
	return n, nil
}

// writeTo writes what is left of the body to w, as one write.
func (b *memBody) writeTo(w io.Writer) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := w.Write(b.b[b.off:])
	b.off += n
	return int64(n), err
}

func (b *memBody) Close() error {
	b.mu.Lock()
	if !b.done {
		b.done = true
		putBodyBuf(b.bp)
		b.b, b.bp = nil, nil
	}
	b.mu.Unlock()
	return b.src.Close()
}

// pooledBody is a streamed body: once the transport is done with it, it
// returns its buffers to the pool, counts the rewritten bytes, and writes
// the summary line if the response ended first (lineDue). A transport may
// close the body on one goroutine while another still reads it (net/http
// after a failed round trip, HTTP/2 when the server ends the stream
// first), so, as memBody, Read and Close are serialised: the buffers go
// back only when no read is in progress, and a read after Close gets an
// error, never bytes of the request that took the buffers next.
type pooledBody struct {
	mu   sync.Mutex
	r    io.Reader
	rw   *template.Rewriter
	bufs [2]*[]byte
	st   *reqState
	src  io.Closer
	done bool
	// fail is the error that stopped the rewrite, kept apart from mu: the
	// handler asks for it when the round trip failed, while the transport
	// may still be inside a Read that waits for the client.
	fail atomic.Pointer[error]
}

func (b *pooledBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.r.Read(p)
	if err != nil {
		if ferr := b.rw.Err(); ferr != nil {
			b.failed(ferr)
		}
	}
	return n, err
}

// failed keeps err for Err (a function of its own, so that only a failure
// allocates).
func (b *pooledBody) failed(err error) { b.fail.Store(&err) }

// Err is the error that stopped the rewrite, if any; nil for a nil b.
func (b *pooledBody) Err() error {
	if b == nil {
		return nil
	}
	if p := b.fail.Load(); p != nil {
		return *p
	}
	return nil
}

func (b *pooledBody) Close() error {
	// The client's body first: a read blocked on it returns, so the lock
	// below is not held for as long as the client takes to send.
	err := b.src.Close()
	b.mu.Lock()
	if b.done {
		b.mu.Unlock()
		return err
	}
	b.done = true
	b.st.p.m.rewritten.Add(float64(b.rw.ReplacedBytes()))
	for _, bp := range b.bufs {
		putBodyBuf(bp)
	}
	b.r, b.bufs = nil, [2]*[]byte{}
	b.mu.Unlock()
	if e, due := b.st.lineDue(nil); due {
		e.secrets = b.st.secretNames()
		b.st.p.finish(e)
	}
	return err
}

// lineDue, for a request whose body streams, records that one end is done
// (the response body, with its summary entry e, or the request body when e
// is nil) and reports whether the summary line is due: when both are. An
// upstream may answer before it read the whole body, and the body then
// resolves secrets after the response ended; the line waits for them, so
// it lists every secret the request resolved (issue 15).
func (st *reqState) lineDue(e *logEntry) (logEntry, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if e != nil {
		st.lineEntry, st.respDone = *e, true
	} else {
		st.bodyDone = true
	}
	return st.lineEntry, st.respDone && st.bodyDone
}

// refuse answers the client itself and logs the request.
func (p *Proxy) refuse(r *http.Request, entry logEntry, err error) *http.Response {
	status, code := classify(err)
	if entry.outcome == "" {
		entry.outcome = OutcomeRefused
	}
	entry.status, entry.code = status, code
	if status >= 500 && code == CodeInternal {
		p.log.Error("proxy request failed", LogFieldRequestID, entry.id, "err", err)
	}
	p.finish(entry)
	return errorResponse(r, status, code, err)
}

func errorBody(code string, err error) []byte {
	msg := err.Error()
	status, _ := classify(err)
	if status == http.StatusInternalServerError {
		msg = "internal error; see the proxy log"
	}
	var b struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	b.Error.Code, b.Error.Message = code, msg
	data, _ := json.Marshal(b)
	return append(data, '\n')
}

func errorResponse(r *http.Request, status int, code string, err error) *http.Response {
	body := errorBody(code, err)
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(HeaderError, code)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if status == http.StatusProxyAuthRequired {
		h.Set("Proxy-Authenticate", `Bearer realm="rotor", Basic realm="rotor"`)
	}
	if code == CodeAuditUnavailable {
		h.Set("Retry-After", "1")
	}
	return &http.Response{
		StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: r,
	}
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(HeaderError, code)
	w.WriteHeader(status)
	_, _ = w.Write(errorBody(code, errors.New(msg)))
}

// logEntry is one request's summary line.
type logEntry struct {
	start    time.Time
	id       string
	method   string
	host     string
	status   int
	code     string
	outcome  string
	secrets  []string
	actor    vault.Actor
	mitm     bool
	bytesOut int64
	scrubbed int
	counted  bool // part of inflight
}

func (p *Proxy) finish(e logEntry) {
	if e.counted {
		defer p.inflight.Add(-1)
	}
	// One clock read for the duration and the line's time (time.Since
	// reads the clock as time.Now does).
	now := time.Now()
	d := now.Sub(e.start)
	p.m.observe(e.outcome, e.status, d.Seconds())
	if e.scrubbed > 0 {
		p.m.scrubbed.Add(float64(e.scrubbed))
	}
	h := p.log.Handler()
	if !h.Enabled(context.Background(), slog.LevelInfo) {
		return // at log level warn, build no line
	}
	writeSummary(h, e, now, d)
}

// writeSummary writes e's summary line at now to h. With logx's handler
// (rotor serve's) the line is written straight into its buffer
// (logx.Line: the same bytes, without a slog.Record per request).
func writeSummary(h slog.Handler, e logEntry, now time.Time, d time.Duration) {
	if lh, ok := h.(*logx.Handler); ok {
		if l, ok := lh.Line(now, slog.LevelInfo, LogMsgRequest); ok {
			l.Str(LogFieldRequestID, e.id)
			l.Str(LogFieldMethod, boundField(e.method, maxLogMethod))
			l.Str(LogFieldHost, boundField(e.host, maxLogHost))
			l.Int(LogFieldStatus, int64(e.status))
			l.Millis(LogFieldDurationMS, d)
			l.Str(LogFieldOutcome, e.outcome)
			l.Strs(LogFieldSecrets, e.secrets)
			l.Int(LogFieldBytesOut, e.bytesOut)
			l.Bool(LogFieldTLS, e.mitm)
			if e.actor.KeyID != "" {
				l.Str(LogFieldActorID, e.actor.KeyID)
				l.Str(LogFieldWorkspace, e.actor.WorkspaceID)
			}
			if e.code != "" {
				l.Str(LogFieldErrorCode, e.code)
			}
			if e.scrubbed > 0 {
				l.Int(LogFieldScrubbed, int64(e.scrubbed))
			}
			_ = l.End()
			return
		}
	}
	attrs := []slog.Attr{
		slog.String(LogFieldRequestID, e.id),
		slog.String(LogFieldMethod, boundField(e.method, maxLogMethod)),
		slog.String(LogFieldHost, boundField(e.host, maxLogHost)),
		slog.Int(LogFieldStatus, e.status),
		slog.Float64(LogFieldDurationMS, float64(d.Microseconds())/1000),
		slog.String(LogFieldOutcome, e.outcome),
		// Not cloned: secretNames hands out a capped slice of names that
		// are only ever appended past it, and the request state is not
		// reused, so no later write can reach what a handler holds.
		slog.Any(LogFieldSecrets, e.secrets),
		slog.Int64(LogFieldBytesOut, e.bytesOut),
		slog.Bool(LogFieldTLS, e.mitm),
	}
	if e.actor.KeyID != "" {
		attrs = append(attrs, slog.String(LogFieldActorID, e.actor.KeyID), slog.String(LogFieldWorkspace, e.actor.WorkspaceID))
	}
	if e.code != "" {
		attrs = append(attrs, slog.String(LogFieldErrorCode, e.code))
	}
	if e.scrubbed > 0 {
		attrs = append(attrs, slog.Int(LogFieldScrubbed, e.scrubbed))
	}
	// The record goes to the handler as slog.Logger.LogAttrs would send it,
	// without the caller's program counter: LogAttrs calls runtime.Callers
	// on every line (pcvalue lookups in the profile), for a source
	// location no Rotor handler writes (none sets AddSource).
	r := slog.NewRecord(now, slog.LevelInfo, LogMsgRequest, 0)
	r.AddAttrs(attrs...)
	_ = h.Handle(context.Background(), r)
}

// loggedBody writes the summary line when the response body is done.
type loggedBody struct {
	io.ReadCloser
	p     *Proxy
	entry logEntry
	n     int64
	once  sync.Once
	// resp and sc clean the trailers when the body is done (they are
	// known only then, and relayed after Close).
	resp *http.Response
	sc   *scrubber
	// st lists the secrets at Close: a streamed request body may resolve
	// more after the response headers came (issue 15: a body resolving 20
	// secrets logged the 10 seen before streaming started).
	st *reqState
}

func (b *loggedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

func (b *loggedBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() {
		b.entry.bytesOut = b.n
		if b.st != nil {
			b.entry.secrets = b.st.secretNames()
		}
		if sr, ok := b.ReadCloser.(*scrubReader); ok {
			b.entry.scrubbed += sr.replaced()
		}
		if lr, ok := b.ReadCloser.(*lateScrubReader); ok {
			b.entry.scrubbed += lr.replacedCount()
			if sr, ok := lr.src.(*scrubReader); ok {
				b.entry.scrubbed += sr.replaced()
			}
			if lr.sc != nil {
				b.sc = lr.sc // trailers: every value, late ones too
			}
		}
		b.entry.scrubbed += cleanTrailer(b.resp, b.sc)
		if b.st != nil && b.st.body != nil {
			// A streamed request body: the line waits for its end too.
			e, due := b.st.lineDue(&b.entry)
			if !due {
				return
			}
			e.secrets = b.st.secretNames()
			b.entry = e
		}
		b.p.finish(b.entry)
	})
	return err
}

func failureReason(err error) string {
	_, code := classify(err)
	return code
}
