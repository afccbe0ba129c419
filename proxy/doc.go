// Package proxy is Rotor's resolving forward proxy, built on goproxy. Workers
// point HTTP_PROXY/HTTPS_PROXY at it and send requests carrying secret
// references (${{ secrets.NAME }}, $<< secrets.NAME >>); the proxy swaps
// them for plaintext in the URL, the headers and the body on the way out,
// encoding each value for the position it lands in (the template
// package), and scrubs echoed values from responses: every form of a
// value a server commonly reflects, in header and trailer names and values
// and the body, with a linear, ASCII-case-blind Aho–Corasick matcher
// (scrub.go, ahocorasick.go, response.go). Responses it cannot scan (an
// unknown encoding, a 206 slice) are refused; the proxy's own X-Rotor-* and
// Rotor-* namespace and hop-by-hop headers never cross it (response.go).
//
// It fails closed: a request whose references cannot all be resolved and
// placed safely is answered with an error (JSON body, X-Rotor-Error header)
// and the upstream receives nothing. For bodies larger than the buffering
// threshold, which stream in constant memory, a failure found after the
// first bytes went out aborts the upstream request mid-body, so the upstream
// never sees a complete request with a reference left in it.
//
// Engines. goproxy is the framework: CONNECT tunnels, non-proxy requests,
// and everything out of the ordinary. The lane (lane_*.go, the default
// engine of `rotor serve`) is a lean HTTP/1.1 fast path in front of it: its
// own accept loop and strict request parser for absolute-form http://
// requests and for requests inside intercepted CONNECT tunnels (TLS with the
// CA's leaf, one session per tunnel), the same request path (handle), a
// same-goroutine upstream client with a keep-alive pool, and its own
// response framing. A connection whose request falls outside the lane's
// subset is handed, with the bytes already read, to net/http's server and
// goproxy for the rest of that connection (lane_server.go), so the lane
// frames a request exactly as net/http would or not at all. EngineStd turns
// the lane off.
package proxy
