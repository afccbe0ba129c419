package workflow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"rotor.sh/rotor/template"
)

// Definition bounds and defaults.
const (
	MaxSteps          = 100
	MaxDefinitionSize = 256 << 10
	MaxHeaders        = 50
	MaxURLLen         = 8 << 10
	// MaxRequestTimeout is the queues' bound: a step request holds a worker
	// and its run's lease for at most this long.
	MaxRequestTimeout     = 90 * time.Second
	DefaultRequestTimeout = 30 * time.Second
	// MaxSleep bounds a sleep and a wait's timeout.
	MaxSleep           = 30 * 24 * time.Hour
	DefaultMaxAttempts = 3
	MaxAttemptsLimit   = 100
	DefaultBackoffBase = time.Second
	DefaultBackoffCap  = time.Hour
)

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`) // like queue names
	stepIDRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]{0,63}$`)
	methods  = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
	// reservedHeaders are set by the engine on every step request.
	reservedHeaders = []string{"Idempotency-Key", "Webhook-Id", "Webhook-Timestamp", "Webhook-Signature", "Proxy-Authorization", "Host", "Content-Length"}
)

// ValidName reports whether s is a valid workflow name (the queue rule).
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Definition is a workflow as the user writes it (JSON, or YAML through the
// CLI): ordered steps.
type Definition struct {
	Steps []Step `json:"steps"`
}

// Step is one step: exactly one of Request, Sleep and WaitForSignal.
type Step struct {
	ID            string   `json:"id"`
	Request       *Request `json:"request,omitempty"`
	Sleep         string   `json:"sleep,omitempty"`
	WaitForSignal string   `json:"wait_for_signal,omitempty"`
	// Timeout bounds a request attempt (default 30s, at most 90s) or a
	// wait (none by default).
	Timeout string `json:"timeout,omitempty"`
	Retry   *Retry `json:"retry,omitempty"`
}

// Request is an HTTP request step. Body is a JSON value (sent as
// application/json unless a Content-Type header says otherwise) or a JSON
// string (sent as its text).
type Request struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    json.RawMessage   `json:"body,omitempty"`
}

// Retry is a request step's retry policy, with the queues' backoff.
type Retry struct {
	MaxAttempts        int     `json:"max_attempts"`
	BackoffBaseSeconds float64 `json:"backoff_base_seconds,omitempty"`
	BackoffCapSeconds  float64 `json:"backoff_cap_seconds,omitempty"`
}

// Step kinds.
const (
	KindRequest = "request"
	KindSleep   = "sleep"
	KindWait    = "wait_for_signal"
)

// plan is a checked definition, ready to run.
type plan struct {
	steps []planStep
	index map[string]int
}

type planStep struct {
	Step
	kind        string
	sleep       time.Duration
	timeout     time.Duration // 0: none (a wait without a timeout)
	maxAttempts int
	backoffBase time.Duration
	backoffCap  time.Duration
	bodyString  bool // Body is a JSON string: sent as its text
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidWorkflow, fmt.Sprintf(format, args...))
}

// ParseDefinition decodes a definition strictly (unknown fields are
// errors) without checking it.
func ParseDefinition(raw []byte) (Definition, error) {
	var d Definition
	if len(raw) > MaxDefinitionSize {
		return d, invalid("the definition is larger than %d bytes", MaxDefinitionSize)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return d, invalid("%v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return d, invalid("the definition must be a single JSON object")
	}
	return d, nil
}

func parseDuration(s string) (time.Duration, error) {
	if strings.HasSuffix(s, "d") {
		var n int
		if _, err := fmt.Sscanf(s, "%dd", &n); err == nil && fmt.Sprintf("%dd", n) == s {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	return time.ParseDuration(s)
}

// compile checks the definition's shape, durations and expressions (not
// its secrets: see Validate) and returns the plan.
func compile(d Definition) (*plan, error) {
	if len(d.Steps) == 0 {
		return nil, invalid("steps: at least one step is required")
	}
	if len(d.Steps) > MaxSteps {
		return nil, invalid("steps: at most %d steps", MaxSteps)
	}
	p := &plan{index: map[string]int{}}
	for i, st := range d.Steps {
		where := fmt.Sprintf("steps[%d]", i)
		if !stepIDRE.MatchString(st.ID) {
			return nil, invalid("%s.id: %q must be letters, digits, '_' and '-' (at most 64, starting with a letter or '_')", where, truncate(st.ID, 70))
		}
		where = fmt.Sprintf("steps[%d] (%s)", i, st.ID)
		if _, dup := p.index[st.ID]; dup {
			return nil, invalid("%s.id: the id is used by an earlier step", where)
		}
		ps := planStep{Step: st}
		kinds := 0
		if st.Request != nil {
			kinds++
			ps.kind = KindRequest
		}
		if st.Sleep != "" {
			kinds++
			ps.kind = KindSleep
		}
		if st.WaitForSignal != "" {
			kinds++
			ps.kind = KindWait
		}
		if kinds != 1 {
			return nil, invalid("%s: a step has exactly one of request, sleep and wait_for_signal", where)
		}
		if st.Timeout != "" {
			d, err := parseDuration(st.Timeout)
			if err != nil || d <= 0 {
				return nil, invalid("%s.timeout: %q is not a duration (like \"30s\", \"10m\", \"72h\")", where, truncate(st.Timeout, 40))
			}
			ps.timeout = d
		}
		if st.Retry != nil && ps.kind != KindRequest {
			return nil, invalid("%s.retry: only request steps retry", where)
		}
		switch ps.kind {
		case KindSleep:
			d, err := parseDuration(st.Sleep)
			if err != nil || d <= 0 || d > MaxSleep {
				return nil, invalid("%s.sleep: %q is not a duration from 1ns to 30 days (like \"10m\")", where, truncate(st.Sleep, 40))
			}
			if st.Timeout != "" {
				return nil, invalid("%s.timeout: a sleep has no timeout", where)
			}
			ps.sleep = d
		case KindWait:
			if !stepIDRE.MatchString(st.WaitForSignal) {
				return nil, invalid("%s.wait_for_signal: %q must be letters, digits, '_' and '-' (at most 64)", where, truncate(st.WaitForSignal, 70))
			}
			if ps.timeout > MaxSleep {
				return nil, invalid("%s.timeout: at most 30 days", where)
			}
		case KindRequest:
			if st.Timeout == "" {
				ps.timeout = DefaultRequestTimeout
			}
			if ps.timeout < time.Second || ps.timeout > MaxRequestTimeout {
				return nil, invalid("%s.timeout: a request's timeout is 1s to %s", where, MaxRequestTimeout)
			}
			ps.maxAttempts, ps.backoffBase, ps.backoffCap = DefaultMaxAttempts, DefaultBackoffBase, DefaultBackoffCap
			if r := st.Retry; r != nil {
				if r.MaxAttempts < 1 || r.MaxAttempts > MaxAttemptsLimit {
					return nil, invalid("%s.retry.max_attempts: must be 1 to %d", where, MaxAttemptsLimit)
				}
				ps.maxAttempts = r.MaxAttempts
				if r.BackoffBaseSeconds != 0 {
					if r.BackoffBaseSeconds < 0.1 || r.BackoffBaseSeconds > 3600 {
						return nil, invalid("%s.retry.backoff_base_seconds: must be 0.1 to 3600", where)
					}
					ps.backoffBase = time.Duration(r.BackoffBaseSeconds * float64(time.Second))
				}
				if r.BackoffCapSeconds != 0 {
					ps.backoffCap = time.Duration(r.BackoffCapSeconds * float64(time.Second))
					if ps.backoffCap < ps.backoffBase || ps.backoffCap > 7*24*time.Hour {
						return nil, invalid("%s.retry.backoff_cap_seconds: must be at least the base and at most 7 days", where)
					}
				}
			}
			if err := checkRequest(p, &ps, where); err != nil {
				return nil, err
			}
		}
		p.index[st.ID] = i
		p.steps = append(p.steps, ps)
	}
	return p, nil
}

// checkRequest checks a request step's fields and its expressions against
// the steps before it.
func checkRequest(p *plan, ps *planStep, where string) error {
	rq := ps.Request
	if !slices.Contains(methods, rq.Method) {
		return invalid("%s.request.method: %q is not one of %s", where, truncate(rq.Method, 20), strings.Join(methods, ", "))
	}
	if rq.URL == "" {
		return invalid("%s.request.url: required", where)
	}
	if len(rq.URL) > MaxURLLen {
		return invalid("%s.request.url: longer than %d bytes", where, MaxURLLen)
	}
	field := where + ".request.url"
	if err := checkExprs(p, rq.URL, field); err != nil {
		return err
	}
	if _, err := template.References(rq.URL, template.ContextQuery); err != nil {
		return invalid("%s: %v", field, err)
	}
	shape := urlShape(rq.URL)
	u, err := url.Parse(shape)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid("%s: must be an absolute http:// or https:// URL", field)
	}
	if strings.Contains(template.HostPart(rq.URL), "$") || strings.Contains(template.HostPart(rq.URL), "%") {
		return invalid("%s: expressions and secret references are not allowed in the host", field)
	}
	if len(rq.Headers) > MaxHeaders {
		return invalid("%s.request.headers: at most %d", where, MaxHeaders)
	}
	for _, k := range slices.Sorted(mapsKeys(rq.Headers)) {
		v := rq.Headers[k]
		field := where + ".request.headers." + k
		ck := http.CanonicalHeaderKey(k)
		if !httpguts.ValidHeaderFieldName(k) || strings.HasPrefix(ck, "Rotor-Internal-") || slices.Contains(reservedHeaders, ck) {
			return invalid("%s: %q is not a header a step may set", field, truncate(k, 70))
		}
		if !httpguts.ValidHeaderFieldValue(v) {
			return invalid("%s: the value holds a control character", field)
		}
		if err := checkExprs(p, v, field); err != nil {
			return err
		}
		if _, err := template.References(v, template.ContextHeader); err != nil {
			return invalid("%s: %v", field, err)
		}
	}
	if len(rq.Body) > 0 {
		field := where + ".request.body"
		var v any
		dec := json.NewDecoder(bytes.NewReader(rq.Body))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			return invalid("%s: %v", field, err)
		}
		if s, ok := v.(string); ok {
			ps.bodyString = true
			if err := checkExprs(p, s, field); err != nil {
				return err
			}
			if _, err := template.References(s, template.ContextRaw); err != nil {
				return invalid("%s: %v", field, err)
			}
		} else {
			if err := walkStrings(v, func(s string) error { return checkExprs(p, s, field) }); err != nil {
				return err
			}
			if _, err := template.References(string(rq.Body), template.ContextJSON); err != nil {
				return invalid("%s: %v", field, err)
			}
		}
	}
	return nil
}

// secretRefs lists the secrets a plan's requests reference, by field.
func (p *plan) secretRefs() []fieldRef {
	var out []fieldRef
	add := func(field, s string, c template.Context) {
		names, _ := template.References(s, c)
		for _, n := range names {
			out = append(out, fieldRef{field: field, name: n})
		}
	}
	for i, ps := range p.steps {
		if ps.kind != KindRequest {
			continue
		}
		where := fmt.Sprintf("steps[%d] (%s).request", i, ps.ID)
		add(where+".url", ps.Request.URL, template.ContextQuery)
		for _, k := range slices.Sorted(mapsKeys(ps.Request.Headers)) {
			add(where+".headers."+k, ps.Request.Headers[k], template.ContextHeader)
		}
		if len(ps.Request.Body) > 0 {
			if ps.bodyString {
				var s string
				_ = json.Unmarshal(ps.Request.Body, &s)
				add(where+".body", s, template.ContextRaw)
			} else {
				add(where+".body", string(ps.Request.Body), template.ContextJSON)
			}
		}
	}
	return out
}

type fieldRef struct{ field, name string }

// SecretChecker reports whether a secret exists in the workspace.
type SecretChecker func(ctx context.Context, name string) (bool, error)

// Validate checks a definition fully: its shape, durations, expressions
// (only earlier steps, known signals, valid paths) and that every secret it
// references exists. Errors wrap ErrInvalidWorkflow and name the step and
// field.
func Validate(ctx context.Context, d Definition, exists SecretChecker) error {
	p, err := compile(d)
	if err != nil {
		return err
	}
	checked := map[string]bool{}
	for _, r := range p.secretRefs() {
		ok, seen := checked[r.name]
		if !seen {
			if ok, err = exists(ctx, r.name); err != nil {
				return err
			}
			checked[r.name] = ok
		}
		if !ok {
			return invalid("%s: secret %s does not exist in this workspace", r.field, r.name)
		}
	}
	return nil
}

// requestDestinations lists the scheme://host:port each request step goes
// to (for the callback credentials rule).
func (p *plan) requestDestinations() []*url.URL {
	var out []*url.URL
	for _, ps := range p.steps {
		if ps.kind == KindRequest {
			if u, err := url.Parse(urlShape(ps.Request.URL)); err == nil {
				out = append(out, u)
			}
		}
	}
	return out
}

// urlShape is a template URL with every expression and reference replaced
// by "x", to check its shape.
func urlShape(raw string) string {
	return template.URLShape(replaceExprs(raw, "x"))
}

func walkStrings(v any, fn func(string) error) error {
	switch x := v.(type) {
	case string:
		return fn(x)
	case []any:
		for _, e := range x {
			if err := walkStrings(e, fn); err != nil {
				return err
			}
		}
	case map[string]any:
		for _, k := range slices.Sorted(mapsKeys(x)) {
			if err := walkStrings(x[k], fn); err != nil {
				return err
			}
		}
	}
	return nil
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
