package dispatch

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"rotor.sh/rotor/proxy"
)

// The pieces of a delivery through the proxy that the dispatcher and the
// workflow engine share: both send a stored template to the resolving
// proxy on loopback and read its answer the same way.

// ProxyClient is the HTTP client that sends deliveries through the proxy at
// pu, keeping up to maxIdle connections to it. It never follows a redirect
// (a 3xx is the callback's answer) and asks for no compression, so the
// proxy's answers are read as they are.
func ProxyClient(pu *url.URL, maxIdle int) *http.Client {
	tr := &http.Transport{Proxy: http.ProxyURL(pu), MaxIdleConns: maxIdle, MaxIdleConnsPerHost: maxIdle, IdleConnTimeout: 90 * time.Second, DisableCompression: true}
	return InProcessClient(tr)
}

// InProcessClient is the delivery client over rt, normally the co-located
// proxy's InternalTransport: the same redirect policy as ProxyClient (a
// 3xx is the callback's answer).
func InProcessClient(rt http.RoundTripper) *http.Client {
	return &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// DeliveryClient is InProcessClient(rt) when rt is set, else ProxyClient to
// proxyURL, which must then name a host (ErrProxyURL otherwise). The
// dispatcher and the workflow engine build their clients with it.
func DeliveryClient(rt http.RoundTripper, proxyURL string, maxIdle int) (*http.Client, error) {
	if rt != nil {
		return InProcessClient(rt), nil
	}
	pu, err := url.Parse(proxyURL)
	if err != nil || pu.Host == "" {
		return nil, fmt.Errorf("%w: %q", ErrProxyURL, proxyURL)
	}
	return ProxyClient(pu, maxIdle), nil
}

// ProxyTarget is the request URL for sending callbackURL through the proxy,
// and the scheme to tell it (ProxyHeaders.Scheme): an https:// URL goes to
// the proxy in clear on loopback with scheme "https", as the proxy speaks
// TLS upstream. Characters a template URL may hold that cannot appear in a
// request line are percent-encoded; the proxy recognises references
// percent-encoded as well as raw.
func ProxyTarget(callbackURL string) (target, scheme string) {
	target = callbackURL
	if rest, ok := cutPrefixFold(target, "https://"); ok {
		target, scheme = "http://"+rest, "https"
	}
	return escapeTarget(target), scheme
}

// ProxyHeaders is what the proxy needs to resolve, sign and account for one
// delivery, beside the Standard Webhooks id and timestamp it signs.
type ProxyHeaders struct {
	// Token is the internal token (Options.InternalToken).
	Token     string
	Workspace string
	// Actor is the key that enqueued the job or started the run: the actor
	// of the secret.accessed rows.
	Actor string
	// Job is set for a job delivery; Run and Step for a workflow step.
	Job, Run, Step string
	// WebhookID is the Standard Webhooks id (stable across attempts).
	WebhookID string
	Attempt   int
	// Scheme is ProxyTarget's scheme.
	Scheme string
	Now    time.Time
}

// Set writes p into h: the Standard Webhooks id and timestamp, the attempt,
// and the proxy's internal headers. The queue's or step's callback secret
// is sent as Authorization only when the template sets none.
func (p ProxyHeaders) Set(h http.Header) {
	attempt := strconv.Itoa(p.Attempt)
	h.Set("webhook-id", p.WebhookID)
	h.Set("webhook-timestamp", strconv.FormatInt(p.Now.Unix(), 10))
	h.Set("Rotor-Attempt", attempt)
	h.Set("Proxy-Authorization", "Bearer "+p.Token)
	h.Set(proxy.HeaderInternalWorkspace, p.Workspace)
	h.Set(proxy.HeaderInternalActor, p.Actor)
	if p.Job != "" {
		h.Set(proxy.HeaderInternalJob, p.Job)
	}
	if p.Run != "" {
		h.Set(proxy.HeaderInternalRun, p.Run)
		h.Set(proxy.HeaderInternalStep, p.Step)
	}
	h.Set(proxy.HeaderInternalAttempt, attempt)
	h.Set(proxy.HeaderInternalSign, "standard-webhooks")
	if p.Scheme != "" {
		h.Set(proxy.HeaderInternalScheme, p.Scheme)
	}
	if h.Get("Authorization") == "" {
		h.Set(proxy.HeaderInternalAuth, "callback")
	}
}

// ProxyErrorCode is the attempt's error code for an answer the proxy made
// itself (its X-Rotor-Error code): a missing secret, an unreachable or
// slow destination read as the delivery codes; any other code is kept.
func ProxyErrorCode(code string) string {
	switch code {
	case proxy.CodeSecretNotFound:
		return ErrCodeSecretMissing
	case proxy.CodeUpstreamUnreachable:
		return ErrCodeConnectionFailed
	case proxy.CodeUpstreamTimeout:
		return ErrCodeTimeout
	}
	return code
}

// escapeTarget percent-encodes the characters a template URL may hold that
// cannot appear in an HTTP request line (spaces, braces, angle brackets...).
func escapeTarget(s string) string {
	const bad = " \"<>\\^`{|}"
	if !strings.ContainsAny(s, bad) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if strings.IndexByte(bad, c) >= 0 || c < 0x20 || c >= 0x7f {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && equalFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}
