package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"
)

// The lane's request parser accepts a strict subset of what net/http's
// server accepts: absolute-form http:// requests, HTTP/1.1, CRLF line
// ends, token header names, one Host, a Content-Length of digits or
// exactly "Transfer-Encoding: chunked" (never both), and no Expect,
// Upgrade or Trailer. Whatever it does not accept it hands over, bytes
// and all, to net/http (lane_server.go), which then answers exactly as
// the std engine does, 400s included. So the lane never reads a request
// differently from net/http: it either reads it the same way (the fuzz
// test in lane_parse_test.go checks that against http.ReadRequest) or
// does not read it at all. That is the defence against request
// smuggling: one framing decision, net/http's, for every byte.

// laneMaxHead bounds a request head the lane reads itself; a longer head
// goes to net/http, whose own limit (MaxHeaderBytes) then applies.
const laneMaxHead = 32 << 10

// laneMaxHeaders bounds the header lines of a head the lane reads itself.
const laneMaxHeaders = 128

// tokenTable marks RFC 9110 token characters.
var tokenTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// commonHeaderKeys interns canonical names of common request fields, so
// reading them allocates nothing (textproto does the same).
var commonHeaderKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control", "Connection",
		"Content-Length", "Content-Type", "Cookie", "Host", "Proxy-Authorization", "Proxy-Connection",
		"User-Agent", "X-Request-Id", "X-Api-Key", "Origin", "Referer", "Pragma", "Transfer-Encoding",
		"Expect", "Upgrade", "Trailer", "Te", "Keep-Alive", "Range", "If-Range", "Content-Encoding",
		HeaderInternalWorkspace, HeaderInternalJob, HeaderInternalAttempt, HeaderInternalRun,
		HeaderInternalStep, HeaderInternalActor, HeaderInternalScheme, HeaderInternalAuth, HeaderInternalSign,
	} {
		m[k] = k
	}
	return m
}()

// laneHead is a parsed request head, before its body is attached.
type laneHead struct {
	req *http.Request
	// chunked: the body is Transfer-Encoding: chunked; otherwise
	// req.ContentLength bytes follow.
	chunked bool
}

// canonicalKey returns the canonical form of a token header name, interned
// when common.
func canonicalKey(name []byte) string {
	if k, ok := commonHeaderKeys[string(name)]; ok {
		return k
	}
	var buf [64]byte
	if len(name) <= len(buf) {
		b := buf[:len(name)]
		upper := true
		for i, c := range name {
			if upper && 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			} else if !upper && 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b[i] = c
			upper = c == '-'
		}
		if k, ok := commonHeaderKeys[string(b)]; ok {
			return k
		}
		return string(b)
	}
	return textproto.CanonicalMIMEHeaderKey(string(name))
}

// What a request head may be, by where it arrives.
type laneMode int

const (
	// modeProxy: on the proxy listener, absolute-form http:// requests.
	modeProxy laneMode = iota
	// modeConnect: on the proxy listener, a CONNECT to intercept.
	modeConnect
	// modeTunnel: inside an intercepted tunnel, origin-form requests; the
	// URL is https:// plus the Host field plus the target, as goproxy
	// builds it.
	modeTunnel
)

// parseLaneHead parses a complete request head (request line, fields,
// and the empty line, each ending in CRLF). It returns errLaneHandoff for
// anything outside the lane's subset; it never answers a request itself.
func parseLaneHead(raw []byte) (laneHead, error) { return parseLaneHeadMode(raw, modeProxy) }

func parseLaneHeadMode(raw []byte, mode laneMode) (laneHead, error) {
	return parseLaneHeadCtx(context.Background(), raw, mode)
}

// parseLaneHeadCtx is parseLaneHeadMode for a request with context ctx.
func parseLaneHeadCtx(ctx context.Context, raw []byte, mode laneMode) (laneHead, error) {
	// One string for the whole head: every value is a slice of it.
	s := string(raw)
	eol := bytes.IndexByte(raw, '\n')
	if eol < 1 || raw[eol-1] != '\r' {
		return laneHead{}, errLaneHandoff
	}
	line := s[:eol-1]
	sp1 := strings.IndexByte(line, ' ')
	if sp1 <= 0 {
		return laneHead{}, errLaneHandoff
	}
	method := line[:sp1]
	rest := line[sp1+1:]
	sp2 := strings.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return laneHead{}, errLaneHandoff
	}
	target, proto := rest[:sp2], rest[sp2+1:]
	if proto != "HTTP/1.1" || (method == http.MethodConnect) != (mode == modeConnect) {
		return laneHead{}, errLaneHandoff
	}
	for i := 0; i < len(method); i++ {
		if !tokenTable[method[i]] {
			return laneHead{}, errLaneHandoff
		}
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c >= 0x7f {
			return laneHead{}, errLaneHandoff
		}
	}
	var u *url.URL
	switch mode {
	case modeProxy:
		if len(target) < len("http://x") || target[:7] != "http://" {
			return laneHead{}, errLaneHandoff
		}
		var ok bool
		if u, ok = parseTargetFast(target, true); !ok {
			var err error
			if u, err = url.ParseRequestURI(target); err != nil {
				return laneHead{}, errLaneHandoff
			}
		}
		if u.Scheme != "http" || u.Host == "" || u.Opaque != "" {
			return laneHead{}, errLaneHandoff
		}
	case modeConnect:
		// net/http: the authority alone, as URL.Host.
		if !laneHostOK(target) || strings.IndexByte(target, ':') < 0 {
			return laneHead{}, errLaneHandoff
		}
		u = &url.URL{Host: target}
	case modeTunnel:
		if target[0] != '/' {
			return laneHead{}, errLaneHandoff
		}
		var ok bool
		if u, ok = parseTargetFast(target, false); !ok {
			var err error
			if u, err = url.ParseRequestURI(target); err != nil {
				return laneHead{}, errLaneHandoff
			}
		}
		if u.Host != "" || u.Opaque != "" {
			return laneHead{}, errLaneHandoff
		}
	}

	// Count the field lines first: one map and one backing array of
	// values, sized once.
	body := raw[eol+1:]
	n := bytes.Count(body, []byte{'\n'}) - 1
	if n < 0 || n > laneMaxHeaders {
		return laneHead{}, errLaneHandoff
	}
	h := make(http.Header, n)
	vals := make([]string, n)
	vi := 0
	off := eol + 1
	var host string
	hosts, cls, tes := 0, 0, 0
	var cl string
	closeConn := false
	for {
		end := bytes.IndexByte(raw[off:], '\n')
		if end < 0 {
			return laneHead{}, errLaneHandoff
		}
		end += off
		if end == off || raw[end-1] != '\r' {
			return laneHead{}, errLaneHandoff // bare LF
		}
		ln := raw[off : end-1]
		lineStart := off
		off = end + 1
		if len(ln) == 0 {
			if off != len(raw) {
				return laneHead{}, errLaneHandoff
			}
			break
		}
		colon := bytes.IndexByte(ln, ':')
		if colon <= 0 {
			return laneHead{}, errLaneHandoff // also obs-fold: a line starting with SP/HT
		}
		name := ln[:colon]
		for _, c := range name {
			if !tokenTable[c] {
				return laneHead{}, errLaneHandoff
			}
		}
		vs, ve := colon+1, len(ln)
		for vs < ve && (ln[vs] == ' ' || ln[vs] == '\t') {
			vs++
		}
		for ve > vs && (ln[ve-1] == ' ' || ln[ve-1] == '\t') {
			ve--
		}
		for _, c := range ln[vs:ve] {
			if c < ' ' && c != '\t' || c == 0x7f {
				return laneHead{}, errLaneHandoff // CR, NUL and other controls
			}
		}
		key := canonicalKey(name)
		value := s[lineStart+vs : lineStart+ve]
		switch key {
		case "Host":
			hosts++
			host = value
		case "Content-Length":
			cls++
			cl = value
		case "Transfer-Encoding":
			tes++
			if value != "chunked" {
				return laneHead{}, errLaneHandoff
			}
		case "Expect", "Upgrade", "Trailer", "Http2-Settings":
			return laneHead{}, errLaneHandoff
		case "Connection":
			if httpguts.HeaderValuesContainsToken([]string{value}, "upgrade") {
				return laneHead{}, errLaneHandoff
			}
			if httpguts.HeaderValuesContainsToken([]string{value}, "close") {
				closeConn = true
			}
		}
		if old := h[key]; old != nil {
			h[key] = append(old[:len(old):len(old)], value)
		} else {
			vals[vi] = value
			h[key] = vals[vi : vi+1 : vi+1]
			vi++
		}
	}
	if hosts != 1 || !laneHostOK(host) || cls > 1 || tes > 1 || cls+tes > 1 {
		return laneHead{}, errLaneHandoff
	}
	reqHost := u.Host
	if mode == modeTunnel {
		tu, ok := tunnelURL(u, host)
		if !ok {
			return laneHead{}, errLaneHandoff
		}
		u, reqHost = tu, host
	}
	delete(h, "Host")
	if p := h["Pragma"]; len(p) > 0 && p[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}
	// WithContext of an empty request (it stays on the stack) is the one
	// allocation: a request with its context from the start, not a copy.
	req := (&http.Request{}).WithContext(ctx)
	req.Method, req.URL, req.Proto, req.ProtoMajor, req.ProtoMinor = method, u, proto, 1, 1
	req.Header, req.Host, req.RequestURI, req.Close, req.Body = h, reqHost, target, closeConn, http.NoBody
	head := laneHead{req: req}
	switch {
	case tes == 1:
		delete(h, "Transfer-Encoding")
		req.TransferEncoding = laneChunked
		req.ContentLength = -1
		head.chunked = true
	case cls == 1:
		if len(cl) == 0 || len(cl) > 18 {
			return laneHead{}, errLaneHandoff
		}
		for i := 0; i < len(cl); i++ {
			if cl[i] < '0' || cl[i] > '9' {
				return laneHead{}, errLaneHandoff
			}
		}
		req.ContentLength, _ = strconv.ParseInt(cl, 10, 64)
	}
	return head, nil
}

// parseTargetFast is url.ParseRequestURI for the usual request targets
// (TestParseTargetFastLikeNetURL, FuzzLaneParse): origin form ("/..."), or
// with abs "http://" and an authority of letters, digits, '.', '-', '_'
// and at most one ':' followed by digits. It has ParseRequestURI's
// result without its copies: no escaped copy of the path to compare with
// the target (escapesTo compares in place), and none of the path at all
// when it holds no '%'. ok is false for anything else, or anything
// ParseRequestURI would refuse, which the caller then gives to
// ParseRequestURI itself. target holds no space, control or non-ASCII
// byte (the caller checked).
func parseTargetFast(target string, abs bool) (*url.URL, bool) {
	u := new(url.URL)
	rest := target
	if abs {
		if !strings.HasPrefix(rest, "http://") {
			return nil, false
		}
		u.Scheme, rest = "http", rest[len("http:"):]
	} else if !strings.HasPrefix(rest, "/") {
		return nil, false
	}
	if q := strings.IndexByte(rest, '?'); q == len(rest)-1 {
		u.ForceQuery, rest = true, rest[:q] // the only '?', and the last byte
	} else if q >= 0 {
		rest, u.RawQuery = rest[:q], rest[q+1:]
	}
	if abs {
		// rest is "//authority/path": the authority ends at the first '/'.
		authority := rest[2:]
		rest = ""
		if i := strings.IndexByte(authority, '/'); i >= 0 {
			authority, rest = authority[:i], authority[i:]
		}
		if !plainAuthority(authority) {
			return nil, false
		}
		u.Host = authority
	}
	path := rest
	if strings.IndexByte(rest, '%') >= 0 {
		var err error
		if path, err = url.PathUnescape(rest); err != nil {
			return nil, false
		}
	}
	u.Path = path
	if !escapesTo(path, rest) {
		u.RawPath = rest
	}
	return u, true
}

// plainAuthority reports whether a is a host net/url takes as it is: no
// userinfo, brackets or '%', letters, digits, '.', '-', '_', and at most
// one ':' with only digits after it.
func plainAuthority(a string) bool { return a == "" || laneHostOK(a) && simpleHost(a) }

// escapesTo reports whether net/url escapes path p to esc (what setPath
// compares to decide on a RawPath), without building the escaped copy.
func escapesTo(p, esc string) bool {
	j := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if cleanPathByte(c) {
			if j >= len(esc) || esc[j] != c {
				return false
			}
			j++
			continue
		}
		if j+3 > len(esc) || esc[j] != '%' || esc[j+1] != upperHex[c>>4] || esc[j+2] != upperHex[c&0xf] {
			return false
		}
		j += 3
	}
	return j == len(esc)
}

// laneChunked is the TransferEncoding of chunked requests (shared, never
// mutated: the proxy replaces the slice, never writes into it).
var laneChunked = []string{"chunked"}

// tunnelURL is a tunnel request's URL as goproxy builds it: https://, the
// request's Host, the target (u, origin-form). In the usual case (a host
// name or IPv4 with an optional numeric port, a path needing no raw form,
// no '#' in the query) that URL is u with the scheme and host set, which
// is what the round trip through String and Parse gives, without its
// three allocations and two parses per request (issue 15); anything else
// takes that round trip. ok is false when the result is not a URL on host.
func tunnelURL(u *url.URL, host string) (*url.URL, bool) {
	if u.RawPath == "" && strings.IndexByte(u.RawQuery, '#') < 0 && simpleHost(host) {
		u.Scheme, u.Host = "https", host
		return u, true
	}
	tu, err := url.Parse("https://" + host + u.String())
	if err != nil || tu.Host != host {
		return nil, false
	}
	return tu, true
}

// simpleHost reports whether h (already laneHostOK) is a name or IPv4
// address with, at most, one ':' followed by digits: a host url.Parse
// takes as it is.
func simpleHost(h string) bool {
	colon := false
	for i := 0; i < len(h); i++ {
		switch c := h[i]; {
		case c == '[' || c == ']':
			return false
		case c == ':':
			if colon {
				return false
			}
			colon = true
		case colon && (c < '0' || c > '9'):
			return false
		}
	}
	return true
}

// laneHostOK accepts a subset of the Host values net/http's
// httpguts.ValidHostHeader accepts: letters, digits, and . - _ : [ ].
func laneHostOK(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_' || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}

// laneBody is a request body read from the connection's reader: exactly
// Content-Length bytes, or chunked (net/http's own chunked decoder, via
// httputil) ending in a last chunk with no trailer fields. Reads are
// serialised with close, so the connection's reader is never read by a
// body after the request is done (the transport may still hold the body
// when the response has been relayed).
type laneBody struct {
	mu     sync.Mutex
	br     *bufio.Reader
	remain int64     // Content-Length bytes left
	cr     io.Reader // chunked decoder, or nil
	done   bool      // the body was read to its clean end
	closed bool
	err    error
}

func (b *laneBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	if b.cr != nil {
		n, err := b.cr.Read(p)
		if err == io.EOF {
			// The last chunk: only the empty line may follow.
			var crlf [2]byte
			if _, rerr := io.ReadFull(b.br, crlf[:]); rerr != nil {
				b.err = fmt.Errorf("%w: %v", io.ErrUnexpectedEOF, rerr)
				return n, b.err
			} else if crlf != [2]byte{'\r', '\n'} {
				b.err = errLaneTrailer
				return n, b.err
			}
			b.done = true
			return n, io.EOF
		}
		if err != nil {
			b.err = err
		}
		return n, err
	}
	if b.remain <= 0 {
		b.done = true
		return 0, io.EOF
	}
	if int64(len(p)) > b.remain {
		p = p[:b.remain]
	}
	n, err := b.br.Read(p)
	b.remain -= int64(n)
	if b.remain == 0 {
		b.done = true
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

// Close stops further reads; it does not drain (the server closes the
// connection instead of reading what is left of a body nobody read).
func (b *laneBody) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// finish closes the body and reports whether it was read to its clean end,
// so the connection's next bytes are the next request. It does not wait
// for a read in progress (a transport still sending a streamed body): that
// body is not done, and closing the connection ends the read.
func (b *laneBody) finish() bool {
	if !b.mu.TryLock() {
		return false
	}
	defer b.mu.Unlock()
	b.closed = true
	return b.done
}

// stop closes the body for good once a read in progress has ended (the
// connection under it is closed first, so that read returns): after it,
// nothing reads the connection's reader, which may then go back to the
// pool for another connection.
func (b *laneBody) stop() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
}

// attachBody gives the request its body reader over br: lb, which may be
// nil for a request with no body.
func (hd *laneHead) attachBody(br *bufio.Reader, lb *laneBody) {
	r := hd.req
	switch {
	case hd.chunked:
		*lb = laneBody{br: br, cr: httputil.NewChunkedReader(br)}
		r.Body = lb
	case r.ContentLength > 0:
		*lb = laneBody{br: br, remain: r.ContentLength}
		r.Body = lb
	default:
		r.Body = http.NoBody
	}
}

// readLaneHead appends the request head read from br to buf: lines up to
// and including the first empty one. Past max bytes it stops with
// errLaneHandoff; raw then holds every byte consumed, for the hand-over.
func readLaneHead(br *bufio.Reader, buf []byte, max int) ([]byte, error) {
	raw := buf[:0]
	lineStart, first := 0, true
	for {
		chunk, err := br.ReadSlice('\n')
		raw = append(raw, chunk...)
		if len(raw) > max {
			return raw, errLaneHandoff
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue // the same line goes on
		case err != nil:
			return raw, err
		}
		line := raw[lineStart:]
		lineStart = len(raw)
		if first {
			first = false // the request line
			continue
		}
		if len(line) == 1 || len(line) == 2 && line[0] == '\r' {
			return raw, nil
		}
	}
}
