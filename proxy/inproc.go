package proxy

import (
	"fmt"
	"net/http"
	"runtime/debug"
)

// InternalTransport returns an http.RoundTripper that hands each request to
// this proxy in the same process: the dispatcher and the workflow engine of
// `rotor serve` deliver through it instead of a loopback socket, which cost
// a connection's reads and writes, the request parsed twice and the
// response relayed twice per job (issue 16).
//
// It runs exactly what the proxy's listener runs for an absolute-form
// request (handle): authentication from Proxy-Authorization (the internal
// token with its Rotor-Internal-* headers, or an API key, checked as over
// the socket), the rewrite and resolution with their audit rows, the
// dispatcher's callback credential and signature, the upstream request,
// response scrubbing, the summary log line and metrics, and every
// fail-closed refusal, answered as the proxy's own error response. One
// difference only makes it stricter: the request has no remote address,
// so a sidecar's default workspace (unauthenticated loopback clients)
// never applies.
//
// The summary line is written when the response body is closed, as the
// listener writes it when the relay ends: callers close the body.
func (p *Proxy) InternalTransport() http.RoundTripper { return internalTransport{p} }

type internalTransport struct{ p *Proxy }

func (t internalTransport) RoundTrip(r *http.Request) (resp *http.Response, err error) {
	if r.URL == nil || r.URL.Scheme != "http" || r.URL.Host == "" || r.Method == http.MethodConnect {
		closeReqBody(r)
		return nil, ErrInternalRequest
	}
	// handle rewrites the request in place; a RoundTripper must leave the
	// caller's request alone, so it gets a copy of what it changes.
	in := *r
	u := *r.URL
	if u.User != nil {
		uu := *u.User
		u.User = &uu
	}
	in.URL = &u
	in.Header = r.Header.Clone()
	if in.Header == nil {
		in.Header = http.Header{}
	}
	in.RemoteAddr, in.RequestURI = "", ""
	if in.Body == nil {
		in.Body = http.NoBody
	}
	defer func() {
		// The proxy's listener survives a panic in handle (net/http
		// recovers it and drops the connection); so does this path: the
		// caller gets an error, as a dropped connection gives it.
		if v := recover(); v != nil {
			// The panic value is not logged: it could hold request data.
			t.p.log.Error("proxy: panic in an in-process request", "stack", string(debug.Stack()))
			resp, err = nil, errInternalPanic
		}
	}()
	_, resp = t.p.handle(&in, nil)
	if resp.Header.Get(HeaderError) != "" {
		// The proxy answered itself: nothing will read the request body
		// any more, and a RoundTripper closes it (the upstream transport
		// closes it when the request went out).
		closeReqBody(&in)
		if err := r.Context().Err(); err != nil {
			// The caller's deadline passed or it gave up: report that, as an
			// HTTP client does, rather than the proxy's reading of the
			// failed upstream call.
			resp.Body.Close()
			return nil, fmt.Errorf("proxy: in-process request: %w", err)
		}
	}
	resp.Request = r
	return resp, nil
}
