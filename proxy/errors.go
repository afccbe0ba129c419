package proxy

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/template"
	"rotor.sh/rotor/vault"
)

// Error codes, sent as the X-Rotor-Error header and in the JSON body.
const (
	CodeProxyAuthRequired   = "proxy_auth_required"
	CodeInvalidReference    = "invalid_reference"
	CodeReferenceInHost     = "reference_in_host"
	CodeValueRefused        = "value_refused"
	CodeSecretNotFound      = "secret_not_found"
	CodeHostNotAllowed      = "host_not_allowed"
	CodeDestinationBlocked  = "destination_blocked"
	CodeUpstreamUnreachable = "upstream_unreachable"
	CodeUpstreamTimeout     = "upstream_timeout"
	CodeBadRequestBody      = "bad_request_body"
	CodeNotProxyRequest     = "not_a_proxy_request"
	CodeUnavailable         = "unavailable"
	// CodeAuditUnavailable: the access row could not be queued (the audit
	// backlog is at its bound), so nothing was resolved or sent.
	CodeAuditUnavailable = "audit_unavailable"
	CodeInternal         = "internal"
	// CodeResponseUnscannable: the response to a request carrying resolved
	// secrets has a Content-Encoding the scrubber cannot read, or is a
	// partial (206) slice.
	CodeResponseUnscannable = "response_unscannable"
	// CodeScrubLimit: the request resolves more than MaxScrubBytes of
	// values and encodings.
	CodeScrubLimit = "scrub_limit"
	// CodeHostTooLong: the destination host exceeds DNS's 253 characters.
	CodeHostTooLong = "host_too_long"
)

// HeaderError carries the error code on every response the proxy makes itself.
const HeaderError = "X-Rotor-Error"

var (
	// ErrProxyAuth: no usable Proxy-Authorization.
	ErrProxyAuth = errors.New("proxy authentication required")
	// ErrReferenceInHost: a reference in the destination host, which would let
	// a secret choose where it is sent.
	ErrReferenceInHost = errors.New("secret references are not allowed in the destination host")
	// ErrDestinationBlocked: the destination resolves only to addresses the
	// SSRF guard refuses.
	ErrDestinationBlocked = errors.New("destination address is not allowed")
	// errBody: reading the client's request body failed.
	errBody = errors.New("reading the request body failed")
	// errLaneHandoff: a request head outside the lane's subset; net/http
	// serves the connection from that request on (lane_server.go).
	errLaneHandoff = errors.New("request outside the lane's subset")
	// errLaneTrailer: a chunked request body carries trailer fields, which
	// the lane does not take (net/http would merge them into
	// Request.Trailer); the request fails as a body error.
	errLaneTrailer = errors.New("trailer fields in a chunked request body")
	// errLaneRetry: a reused upstream connection failed before any byte of
	// the response came (the peer had closed it); see laneClient.RoundTrip.
	errLaneRetry = errors.New("reused upstream connection closed by the peer")
	// errLaneHeadTooLarge: an upstream response head passed
	// laneMaxResponseHead; the connection is closed, the request fails.
	errLaneHeadTooLarge = errors.New("upstream response head too large")
	// errLaneBody: the request body failed while the lane client sent it.
	errLaneBody = errors.New("request body failed")
)

// classify maps an error to status and code: the one place this happens.
func classify(err error) (int, string) {
	switch {
	case errors.Is(err, ErrProxyAuth), errors.Is(err, vault.ErrUnauthenticated):
		return http.StatusProxyAuthRequired, CodeProxyAuthRequired
	case errors.Is(err, ErrHostTooLong):
		return http.StatusBadRequest, CodeHostTooLong
	case errors.Is(err, ErrScrubLimit):
		return http.StatusBadRequest, CodeScrubLimit
	case errors.Is(err, ErrResponseUnscannable):
		return http.StatusBadGateway, CodeResponseUnscannable
	case errors.Is(err, ErrReferenceInHost):
		return http.StatusBadRequest, CodeReferenceInHost
	case errors.Is(err, template.ErrReference), errors.Is(err, template.ErrOutsideString), errors.Is(err, vault.ErrInvalidName):
		return http.StatusBadRequest, CodeInvalidReference
	case errors.Is(err, template.ErrValueRefused):
		return http.StatusBadRequest, CodeValueRefused
	case errors.Is(err, vault.ErrNotFound):
		return http.StatusUnprocessableEntity, CodeSecretNotFound
	case errors.Is(err, vault.ErrHostNotAllowed):
		return http.StatusForbidden, CodeHostNotAllowed
	case errors.Is(err, ErrDestinationBlocked):
		return http.StatusForbidden, CodeDestinationBlocked
	case errors.Is(err, errBody):
		return http.StatusBadRequest, CodeBadRequestBody
	case errors.Is(err, vault.ErrAuditUnavailable):
		return http.StatusServiceUnavailable, CodeAuditUnavailable
	case errors.Is(err, storage.ErrUnavailable), errors.Is(err, vault.ErrClosed):
		return http.StatusServiceUnavailable, CodeUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, CodeUpstreamTimeout
	case errors.Is(err, vault.ErrDecrypt):
		return http.StatusInternalServerError, CodeInternal
	case errors.Is(err, errUpstream):
		return http.StatusBadGateway, CodeUpstreamUnreachable
	default:
		return http.StatusInternalServerError, CodeInternal
	}
}

// errUpstream marks failures talking to the destination.
var errUpstream = errors.New("upstream request failed")

var (
	// ErrResponseUnscannable: secrets were resolved into the request, and
	// the response has a Content-Encoding the scrubber cannot read or is a
	// 206 slice (a value cut at its edges matches no form); it is not
	// relayed (fail closed).
	ErrResponseUnscannable = errors.New("the response cannot be scanned for resolved secrets")
	// ErrScrubLimit: the request resolves more secret material than one
	// response scrubber may look for (MaxScrubBytes); nothing is sent.
	ErrScrubLimit = errors.New("too much resolved secret material in one request to scrub its response")
	// ErrHostTooLong: the destination host exceeds 253 characters, the
	// longest name DNS allows.
	ErrHostTooLong = errors.New("destination host longer than 253 characters")
)

// withheldError is an error whose message had the upstream's bytes taken
// out (reqState.withheld); errors.Is and classify see the original.
type withheldError struct {
	msg string
	err error
}

func (e *withheldError) Error() string { return e.msg }
func (e *withheldError) Unwrap() error { return e.err }

// withheld is err as the client's answer and the log line may show it once
// the request carried resolved values. Go's parsers quote what they could
// not read (a malformed status line or header, a bad Content-Length, an
// unknown content coding), and those bytes are the upstream's: one that
// puts a value it received there would otherwise have the proxy show it
// to the worker the scrubber keeps it from. Quoted strings become "…",
// every form the response scrubber knows (base64, percent-, JSON-encoded,
// Basic credentials) is scrubbed as in a response, and any value left in
// clear (one too short for the scrubber) becomes [redacted].
func (st *reqState) withheld(err error) error {
	st.mu.Lock()
	rs := st.resolved[:len(st.resolved):len(st.resolved)]
	st.mu.Unlock()
	if len(rs) == 0 || err == nil {
		return err
	}
	msg := redactQuoted(err.Error())
	if sc, _, serr := st.scrubberNow(); serr == nil && sc != nil {
		if b, ok := sc.replaceAll([]byte(msg)); ok {
			msg = string(b)
		}
	}
	for _, r := range rs {
		if v := r.value.Bytes(); len(v) > 0 {
			msg = strings.ReplaceAll(msg, string(v), "[redacted]")
		}
	}
	return &withheldError{msg: msg, err: err}
}

// redactQuoted replaces each Go-quoted string in msg (as %q writes one)
// with "…"; an unterminated one ends the message.
func redactQuoted(msg string) string {
	var b strings.Builder
	for i := 0; i < len(msg); {
		j := strings.IndexByte(msg[i:], '"')
		if j < 0 {
			b.WriteString(msg[i:])
			break
		}
		b.WriteString(msg[i : i+j])
		b.WriteString(`"…"`)
		q, err := strconv.QuotedPrefix(msg[i+j:])
		if err != nil {
			break
		}
		i += j + len(q)
	}
	return b.String()
}

// In-process delivery (InternalTransport).
var (
	// ErrInternalRequest: a request handed to InternalTransport that no
	// proxy listener would take either (not absolute-form http://, or
	// CONNECT).
	ErrInternalRequest = errors.New("proxy: in-process request must be an absolute http:// URL")
	// errInternalPanic: handling an in-process request panicked (logged).
	errInternalPanic = errors.New("proxy: the in-process request failed (see the proxy log)")
)
