package dispatch

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"rotor.sh/rotor/proxy"
)

// What an attempt keeps of its exchange, for people reading it later (the
// dashboard's job page). Bounded so a job with many attempts stays small.
const (
	maxExcerptBytes = 512
	maxDetailHeader = 24
	maxHeaderValue  = 200
	maxErrorWords   = 300
)

// credentialRE finds credentials a callback may reflect back (an echo
// handler printing its request): the callback secret the proxy adds
// ("rcs_..."), signing keys ("whsec_..."), API keys ("rtr_...") and any
// bearer token. Resolved secret values are scrubbed by the proxy already;
// these are added after its rewrite, so the dispatcher removes them itself
// before anything is stored.
var credentialRE = regexp.MustCompile(`(?i)(rcs_|whsec_|rtr_)[A-Za-z0-9+/=_.-]+|(bearer|basic)(\s+)[^\s"',;]+`)

func redactCredentials(s string) string {
	if !mayHoldCredentialHook(s) {
		return s // the usual header value or body: no regexp run (issue 16)
	}
	return credentialRE.ReplaceAllStringFunc(s, redactMatch)
}

// redactMatch keeps a match's prefix: "rcs_" (or whsec_, rtr_) before the
// token, or the scheme before a bearer or basic credential. The prefix is
// found by the match's shape, not by comparing it with the ASCII words:
// (?i) also matches "rcſ_x" (U+017F), and \s includes \f, which a lookup
// of " \t\r\n" in a lower-cased match missed, slicing at -1: a callback
// answering "Bearer\fx" made the dispatcher panic.
func redactMatch(m string) string {
	if i := strings.IndexAny(m, " \t\n\f\r"); i > 0 {
		// (bearer|basic)\s+credential: the token forms hold no whitespace.
		return m[:i] + " [redacted]"
	}
	if i := strings.IndexByte(m, '_'); i >= 0 {
		// The prefixes end at their one '_'.
		return m[:i+1] + "[redacted]"
	}
	return "[redacted]"
}

// mayHoldCredentialHook is mayHoldCredential; a test turns it off to
// compare with the regexp alone.
var mayHoldCredentialHook = mayHoldCredential

// mayHoldCredential is false when credentialRE cannot match s: every match
// starts with one of its literal prefixes, compared here in ASCII case
// folding. Non-ASCII text goes to the regexp, whose (?i) also folds
// characters such as U+017F (a long s) onto ASCII letters.
func mayHoldCredential(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			return true
		}
		switch c | 0x20 {
		case 'r':
			if hasPrefixFold(s[i:], "rcs_") || hasPrefixFold(s[i:], "rtr_") {
				return true
			}
		case 'w':
			if hasPrefixFold(s[i:], "whsec_") {
				return true
			}
		case 'b':
			if hasPrefixFold(s[i:], "bearer") || hasPrefixFold(s[i:], "basic") {
				return true
			}
		}
	}
	return false
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && equalFold(s[:len(prefix)], prefix)
}

// requestTemplate is the request as the dispatcher sent it to the proxy:
// the queue's templates and Rotor's own headers, without the proxy's
// credential and internal headers. Values are references, never plaintext.
func requestTemplate(h http.Header) map[string]string {
	out := make(map[string]string, len(h))
	for k, vs := range h {
		if equalFold(k, "proxy-authorization") || hasPrefixFold(k, "rotor-internal") || hasPrefixFold(k, "x-rotor-internal") {
			continue
		}
		v := ""
		if len(vs) > 0 {
			v = vs[0]
		}
		out[http.CanonicalHeaderKey(k)] = clip(v, maxHeaderValue)
	}
	if h.Get(proxy.HeaderInternalAuth) == "callback" {
		out["Authorization"] = "Bearer (the workspace's callback secret, added by the proxy)"
	}
	if h.Get(proxy.HeaderInternalSign) != "" {
		out["Webhook-Signature"] = "(signed by the proxy)"
	}
	return out
}

// responseHeaders keeps a bounded, redacted copy of the callback's answer.
func responseHeaders(h http.Header) map[string]string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := map[string]string{}
	for _, k := range keys {
		if len(out) == maxDetailHeader {
			break
		}
		switch strings.ToLower(k) {
		case "set-cookie", "authorization", "proxy-authorization", "www-authenticate":
			out[k] = "[redacted]"
		default:
			out[k] = clip(redactCredentials(strings.Join(h[k], ", ")), maxHeaderValue)
		}
	}
	return out
}

// excerpt is the start of a response body, redacted; a binary body is
// named, not kept.
func excerpt(b []byte, truncated bool) string {
	if len(b) == 0 {
		return ""
	}
	if bytes.IndexByte(b, 0) >= 0 {
		// NUL marks binary data, and PostgreSQL's jsonb (where jobs are
		// stored) refuses \u0000 in a string.
		return "(binary body)"
	}
	if !utf8.Valid(b) && truncated {
		// The cut may have split a rune: drop its start.
		for i := 1; i <= 3 && i < len(b); i++ {
			if utf8.Valid(b[:len(b)-i]) {
				b = b[:len(b)-i]
				break
			}
		}
	}
	if !utf8.Valid(b) {
		return "(binary body)"
	}
	s := redactCredentials(string(b))
	if truncated {
		s += "…"
	}
	return s
}

// clip bounds a stored string, without NULs (which jsonb refuses).
func clip(s string, n int) string {
	s = strings.ReplaceAll(s, "\x00", "")
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) && len(s) > 0 {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// proxyErrorWords reads a response the proxy made itself (X-Rotor-Error)
// and says what went wrong. Network failures are put in fixed words (the
// raw error may name internals); the proxy's other messages are meant for
// clients and are kept, redacted and bounded.
func proxyErrorWords(code string, body []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	msg := e.Error.Message
	switch code {
	case proxy.CodeUpstreamUnreachable:
		return networkWords(msg)
	case proxy.CodeUpstreamTimeout:
		return "timed out waiting for the callback"
	}
	if msg == "" {
		return code
	}
	return clip(redactCredentials(msg), maxErrorWords)
}

// networkWords names a failure to reach the callback.
func networkWords(msg string) string {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "no such host"), strings.Contains(m, "server misbehaving") && strings.Contains(m, "lookup"),
		strings.Contains(m, "lookup "):
		return "DNS lookup failed: the callback's host name does not resolve"
	case strings.Contains(m, "connection refused"):
		return "connection refused: nothing listens on the callback's port"
	case strings.Contains(m, "x509:"), strings.Contains(m, "certificate"):
		return "TLS failed: the callback's certificate is not trusted (" + tlsReason(m) + ")"
	case strings.Contains(m, "tls:"), strings.Contains(m, "handshake"):
		return "TLS handshake failed with the callback"
	case strings.Contains(m, "timeout"), strings.Contains(m, "deadline exceeded"):
		return "timed out connecting to the callback"
	case strings.Contains(m, "connection reset"), strings.Contains(m, "broken pipe"), strings.Contains(m, "eof"):
		return "the callback closed the connection before answering"
	case strings.Contains(m, "no route to host"), strings.Contains(m, "network is unreachable"):
		return "no route to the callback's host"
	}
	return "could not reach the callback (the proxy's log has the details)"
}

func tlsReason(m string) string {
	switch {
	case strings.Contains(m, "unknown authority"):
		return "signed by an unknown authority"
	case strings.Contains(m, "expired"), strings.Contains(m, "not yet valid"):
		return "expired or not yet valid"
	case strings.Contains(m, "not valid for"), strings.Contains(m, "doesn't contain"):
		return "issued for another name"
	}
	return "verification failed"
}

// clientErrorWords names a failure talking to the proxy itself.
func clientErrorWords(err error) string {
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		return "timed out waiting for the callback"
	}
	return "could not reach Rotor's proxy: " + networkWords(err.Error())
}
