package workflow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/proxy"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/template"
)

// MaxOutputBytes caps a step's stored output: a larger response body is
// cut there and the step's output_truncated is set.
const MaxOutputBytes = 64 << 10

// Error codes of step attempts beyond the dispatcher's (timeout,
// connection_failed, http_status, secret_missing, and the proxy's own).
const (
	// ErrCodeExpression: an expression could not be evaluated (a missing
	// field in an output), or substituted data held a secret reference.
	ErrCodeExpression = "expression_failed"
	// ErrCodeWaitTimeout: a wait_for_signal step's timeout passed.
	ErrCodeWaitTimeout = "wait_timeout"
	// ErrCodeActorRevoked: the API key that started the run was revoked
	// (or no longer exists); its runs stop as its requests do.
	ErrCodeActorRevoked = dispatch.ErrCodeActorRevoked
)

const userAgent = "Rotor-Workflow/1"

// built is a step request ready to send: its templates' engine
// expressions substituted, secret references left for the proxy.
type built struct {
	method, url string
	header      http.Header
	body        []byte
}

// build substitutes a request step's expressions.
func build(ps planStep, run *storage.WorkflowRun) (built, error) {
	v := env{run: run}
	rq := ps.Request
	u, err := v.renderURL(rq.URL)
	if err != nil {
		return built{}, err
	}
	if err := sameRefs(rq.URL, u, template.ContextQuery); err != nil {
		return built{}, err
	}
	b := built{method: rq.Method, url: u, header: http.Header{}}
	for k, tv := range rq.Headers {
		hv, err := v.render(tv, modeHeader)
		if err != nil {
			return built{}, err
		}
		// As the proxy reads the field: inside Basic credentials of an
		// Authorization header, it decodes base64 before it looks.
		ck := http.CanonicalHeaderKey(k)
		if err := sameNames(func(s string) ([]string, error) { return proxy.HeaderReferences(ck, s) }, tv, hv); err != nil {
			return built{}, err
		}
		b.header.Set(k, hv)
	}
	if len(rq.Body) > 0 {
		if ps.bodyString {
			var s string
			_ = json.Unmarshal(rq.Body, &s)
			out, err := v.render(s, modeRaw)
			if err != nil {
				return built{}, err
			}
			// In the context the proxy will read the body in (a form body
			// is percent-decoded before it looks), from the rendered
			// Content-Type, which data may have chosen.
			if err := sameRefs(s, out, proxy.BodyContext(b.header.Get("Content-Type"))); err != nil {
				return built{}, err
			}
			b.body = []byte(out)
		} else {
			out, err := v.renderJSON(rq.Body)
			if err != nil {
				return built{}, err
			}
			// Compare with the template in the same encoding: a stored
			// definition's body has < and > as \u003c and \u003e, which
			// would hide its $<< >> references from the count.
			tmpl, err := plainJSON(rq.Body)
			if err != nil {
				return built{}, err
			}
			if b.header.Get("Content-Type") == "" {
				b.header.Set("Content-Type", "application/json")
			}
			if err := sameRefs(string(tmpl), string(out), proxy.BodyContext(b.header.Get("Content-Type"))); err != nil {
				return built{}, err
			}
			b.body = out
		}
	}
	return b, nil
}

// attemptResult is what one attempt got.
type attemptResult struct {
	status    int
	code      string
	header    http.Header
	output    json.RawMessage
	truncated bool
}

// send sends a built step request through the resolving proxy, as the
// dispatcher sends a delivery: the internal token, the workspace, the
// actor (the key that started the run), Standard Webhooks signing, and the
// callback secret when the step sets no Authorization.
func (e *Engine) send(ctx context.Context, run *storage.WorkflowRun, ps planStep, b built, n int, now time.Time) attemptResult {
	target, scheme := dispatch.ProxyTarget(b.url)
	rctx, cancel := context.WithTimeout(ctx, ps.timeout)
	defer cancel()
	var body io.Reader
	if b.body != nil {
		body = bytes.NewReader(b.body)
	}
	req, err := http.NewRequestWithContext(rctx, b.method, target, body)
	if err != nil {
		return attemptResult{code: dispatch.ErrCodeConnectionFailed}
	}
	h := req.Header
	for k, v := range b.header {
		h[k] = v
	}
	if h.Get("User-Agent") == "" {
		h.Set("User-Agent", userAgent)
	}
	stepKey := run.ID + "/" + ps.ID
	h.Set("Idempotency-Key", stepKey)
	h.Set("Rotor-Workflow-Run", run.ID)
	h.Set("Rotor-Workflow-Step", ps.ID)
	dispatch.ProxyHeaders{Token: e.o.InternalToken, Workspace: run.WorkspaceID, Actor: run.StartedBy, Run: run.ID, Step: ps.ID,
		WebhookID: stepKey, Attempt: n, Scheme: scheme, Now: now}.Set(h)
	resp, err := e.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return attemptResult{code: dispatch.ErrCodeTimeout}
		}
		return attemptResult{code: dispatch.ErrCodeConnectionFailed}
	}
	defer resp.Body.Close()
	if code := resp.Header.Get(proxy.HeaderError); code != "" {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return attemptResult{code: dispatch.ProxyErrorCode(code), header: resp.Header}
	}
	// The body as the proxy relays it: scrubbed of every secret this
	// request resolved.
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxOutputBytes+1))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || rctx.Err() != nil {
			return attemptResult{code: dispatch.ErrCodeTimeout}
		}
		return attemptResult{code: dispatch.ErrCodeConnectionFailed}
	}
	res := attemptResult{status: resp.StatusCode, header: resp.Header}
	res.output, res.truncated = outputOf(redactCredentials(raw), resp.Header.Get("Content-Type"))
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		res.code = dispatch.ErrCodeHTTPStatus
	}
	return res
}

// credentialRE finds Rotor's own credentials in a response body: the
// callback secret the proxy adds to a step that sets no Authorization
// ("rcs_..."), signing secrets ("whsec_...") and API keys ("rtr_..."). The
// proxy scrubs the secrets a request resolved; these it adds after its
// rewrite, so an upstream that echoes its request (an echo handler,
// httpbin) would hand them back, and a step's output is stored and shown
// to every member. Job attempts redact them the same way (dispatch).
var credentialRE = regexp.MustCompile(`(?i)(rcs_|whsec_|rtr_)[A-Za-z0-9+/=_.-]+`)

// redactCredentials replaces each credential's text after its prefix.
func redactCredentials(b []byte) []byte {
	return credentialRE.ReplaceAllFunc(b, func(m []byte) []byte {
		i := bytes.IndexByte(m, '_') + 1
		return append(m[:i:i], "[redacted]"...)
	})
}

// outputOf is a response body as step output: the JSON value when the
// body is JSON, else a JSON string of its text; cut at MaxOutputBytes.
func outputOf(raw []byte, contentType string) (json.RawMessage, bool) {
	truncated := len(raw) > MaxOutputBytes
	if truncated {
		raw = raw[:MaxOutputBytes]
	}
	if len(raw) == 0 {
		return nil, false
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	if !truncated && (mt == "application/json" || strings.HasSuffix(mt, "+json") || mt == "") && json.Valid(raw) {
		var c bytes.Buffer
		if json.Compact(&c, raw) == nil {
			return c.Bytes(), false
		}
	}
	for len(raw) > 0 && !utf8.Valid(raw) && truncated {
		raw = raw[:len(raw)-1] // a cut rune
	}
	s, _ := json.Marshal(strings.ToValidUTF8(string(raw), "\uFFFD"))
	return s, truncated
}
