package workflow

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/template"
)

// Expressions are ${{ EXPR }} with EXPR one of
//
//	input[.PATH]  steps.ID.output[.PATH]  steps.ID.status
//	signals.NAME.data[.PATH]  run.id
//
// and PATH dot-separated keys or array indexes. ${{ secrets.NAME }} (and
// $<< secrets.NAME >>) is not an expression: it is left in place for the
// proxy, which alone resolves secrets.

// maxExprLen bounds one expression's text.
const maxExprLen = 512

var segRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

type expr struct {
	root  string // input, steps, signals, run
	id    string // step id or signal name
	field string // output, status, data, id
	path  []string
}

// piece is a literal or an expression of a template string.
type piece struct {
	lit string
	e   *expr
}

// splitTemplate cuts s into literals and expressions. Secret references
// stay in the literals.
func splitTemplate(s string) ([]piece, error) {
	var out []piece
	for {
		i := strings.Index(s, "${{")
		if i < 0 {
			if s != "" {
				out = append(out, piece{lit: s})
			}
			return out, nil
		}
		j := strings.Index(s[i+3:], "}}")
		if j < 0 {
			if isSecretRef(s[i+3:]) {
				// The proxy's checks name this malformed reference.
				out = append(out, piece{lit: s})
				return out, nil
			}
			return nil, fmt.Errorf("unterminated expression (expected }})")
		}
		inner := s[i+3 : i+3+j]
		end := i + 3 + j + 2
		if isSecretRef(inner) {
			out = append(out, piece{lit: s[:end]})
			s = s[end:]
			continue
		}
		if len(inner) > maxExprLen {
			return nil, fmt.Errorf("expression longer than %d characters", maxExprLen)
		}
		e, err := parseExpr(strings.Trim(inner, " \t"))
		if err != nil {
			return nil, err
		}
		if i > 0 {
			out = append(out, piece{lit: s[:i]})
		}
		out = append(out, piece{e: e})
		s = s[end:]
	}
}

// isSecretRef: the text after "${{" starts (after spaces) with a
// secret-like prefix; the proxy's scanner owns those, near-misses included.
func isSecretRef(after string) bool {
	t := strings.ToLower(strings.TrimLeft(after, " \t"))
	return strings.HasPrefix(t, "secrets.") || strings.HasPrefix(t, "secret.")
}

func parseExpr(s string) (*expr, error) {
	parts := strings.Split(s, ".")
	bad := func(why string) (*expr, error) {
		return nil, fmt.Errorf("%q: %s", truncate(s, 80), why)
	}
	for _, p := range parts {
		if !segRE.MatchString(p) {
			return bad("not an expression (use input.PATH, steps.ID.output.PATH, steps.ID.status, signals.NAME.data.PATH, run.id or secrets.NAME)")
		}
	}
	switch parts[0] {
	case "input":
		return &expr{root: "input", path: parts[1:]}, nil
	case "run":
		if len(parts) != 2 || parts[1] != "id" {
			return bad("the run's only field is run.id")
		}
		return &expr{root: "run", field: "id"}, nil
	case "steps":
		if len(parts) < 3 {
			return bad("use steps.ID.output[.PATH] or steps.ID.status")
		}
		switch parts[2] {
		case "output":
			return &expr{root: "steps", id: parts[1], field: "output", path: parts[3:]}, nil
		case "status":
			if len(parts) != 3 {
				return bad("steps.ID.status has no path")
			}
			return &expr{root: "steps", id: parts[1], field: "status"}, nil
		}
		return bad("use steps.ID.output[.PATH] or steps.ID.status")
	case "signals":
		if len(parts) < 3 || parts[2] != "data" {
			return bad("use signals.NAME.data[.PATH]")
		}
		return &expr{root: "signals", id: parts[1], field: "data", path: parts[3:]}, nil
	}
	return bad("unknown expression (use input., steps., signals., run.id, or secrets. for a secret)")
}

// checkExprs checks every expression of s against the steps compiled so
// far (earlier steps only).
func checkExprs(p *plan, s, field string) error {
	pieces, err := splitTemplate(s)
	if err != nil {
		return invalid("%s: %v", field, err)
	}
	for _, pc := range pieces {
		e := pc.e
		if e == nil {
			continue
		}
		switch e.root {
		case "steps":
			if _, ok := p.index[e.id]; !ok {
				return invalid("%s: steps.%s is not an earlier step", field, e.id)
			}
		case "signals":
			found := false
			for _, ps := range p.steps {
				if ps.kind == KindWait && ps.WaitForSignal == e.id {
					found = true
				}
			}
			if !found {
				return invalid("%s: signals.%s: no earlier step waits for a signal named %s", field, e.id, e.id)
			}
		}
	}
	return nil
}

// replaceExprs replaces each expression of s by with (for shape checks).
func replaceExprs(s, with string) string {
	pieces, err := splitTemplate(s)
	if err != nil {
		return s
	}
	var b strings.Builder
	for _, pc := range pieces {
		if pc.e != nil {
			b.WriteString(with)
		} else {
			b.WriteString(pc.lit)
		}
	}
	return b.String()
}

// env is what expressions evaluate against: the run as checkpointed.
type env struct {
	run *storage.WorkflowRun
}

func (v env) eval(e *expr) (json.RawMessage, error) {
	var base json.RawMessage
	switch e.root {
	case "run":
		b, _ := json.Marshal(v.run.ID)
		return b, nil
	case "input":
		base = v.run.Input
	case "steps":
		var st *storage.StepState
		for i := range v.run.Steps {
			if v.run.Steps[i].ID == e.id {
				st = &v.run.Steps[i]
			}
		}
		if st == nil {
			return nil, fmt.Errorf("%w: steps.%s: no such step", errExpr, e.id)
		}
		if e.field == "status" {
			b, _ := json.Marshal(st.Status)
			return b, nil
		}
		base = st.Output
	case "signals":
		for i := len(v.run.Signals) - 1; i >= 0; i-- {
			if sg := v.run.Signals[i]; sg.Name == e.id && sg.UsedBy != "" {
				base = sg.Data
				break
			}
		}
		if base == nil {
			return nil, fmt.Errorf("%w: signals.%s: no signal received", errExpr, e.id)
		}
	}
	if len(base) == 0 {
		base = json.RawMessage("null")
	}
	if len(e.path) == 0 {
		return base, nil
	}
	var cur any
	dec := json.NewDecoder(bytes.NewReader(base))
	dec.UseNumber()
	if err := dec.Decode(&cur); err != nil {
		return nil, fmt.Errorf("%w: %s is not JSON", errExpr, e.root)
	}
	for _, seg := range e.path {
		switch x := cur.(type) {
		case map[string]any:
			val, ok := x[seg]
			if !ok {
				return nil, fmt.Errorf("%w: %s: no field %q", errExpr, exprText(e), seg)
			}
			cur = val
		case []any:
			n, err := strconv.Atoi(seg)
			if err != nil || n < 0 || n >= len(x) {
				return nil, fmt.Errorf("%w: %s: no element %q", errExpr, exprText(e), seg)
			}
			cur = x[n]
		default:
			return nil, fmt.Errorf("%w: %s: %q is not inside an object or array", errExpr, exprText(e), seg)
		}
	}
	return marshalNoEscape(cur)
}

func exprText(e *expr) string {
	parts := []string{e.root}
	if e.id != "" {
		parts = append(parts, e.id)
	}
	if e.field != "" && e.root != "input" {
		parts = append(parts, e.field)
	}
	return strings.Join(append(parts, e.path...), ".")
}

func marshalNoEscape(v any) (json.RawMessage, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// text is a value as it goes into a string: a string's own text, nothing
// for null, JSON for the rest.
func text(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	if string(raw) == "null" {
		return ""
	}
	return string(raw)
}

// Rendering modes: how a value is encoded where it lands.
type mode int

const (
	modeRaw mode = iota
	modePath
	modeQuery
	modeHeader
)

func (v env) render(s string, m mode) (string, error) {
	pieces, err := splitTemplate(s)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, pc := range pieces {
		if pc.e == nil {
			b.WriteString(pc.lit)
			continue
		}
		raw, err := v.eval(pc.e)
		if err != nil {
			return "", err
		}
		t := text(raw)
		switch m {
		case modePath:
			t = url.PathEscape(t)
		case modeQuery:
			t = url.QueryEscape(t)
		case modeHeader:
			for i := 0; i < len(t); i++ {
				if c := t[i]; c < 0x20 && c != '\t' || c == 0x7f {
					return "", fmt.Errorf("%w: %s holds a control character, which cannot go into a header", errExpr, exprText(pc.e))
				}
			}
		}
		b.WriteString(t)
	}
	return b.String(), nil
}

// renderURL substitutes a URL template: path-escaped before the query,
// query-escaped after it.
func (v env) renderURL(s string) (string, error) {
	path, query, hasQuery := strings.Cut(s, "?")
	out, err := v.render(path, modePath)
	if err != nil || !hasQuery {
		return out, err
	}
	q, err := v.render(query, modeQuery)
	return out + "?" + q, err
}

// renderJSON substitutes inside a JSON body's strings: a string that is
// exactly one expression becomes the value itself (a number stays a
// number), any other string gets the values' text, JSON-escaped.
func (v env) renderJSON(body json.RawMessage) (json.RawMessage, error) {
	var doc any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	var walk func(x any) (any, error)
	walk = func(x any) (any, error) {
		switch t := x.(type) {
		case string:
			pieces, err := splitTemplate(t)
			if err != nil {
				return nil, err
			}
			if len(pieces) == 1 && pieces[0].e != nil {
				raw, err := v.eval(pieces[0].e)
				if err != nil {
					return nil, err
				}
				return raw, nil
			}
			return v.render(t, modeRaw)
		case []any:
			for i := range t {
				n, err := walk(t[i])
				if err != nil {
					return nil, err
				}
				t[i] = n
			}
			return t, nil
		case map[string]any:
			for k := range t {
				n, err := walk(t[k])
				if err != nil {
					return nil, err
				}
				t[k] = n
			}
			return t, nil
		}
		return x, nil
	}
	out, err := walk(doc)
	if err != nil {
		return nil, err
	}
	return marshalNoEscape(out)
}

// plainJSON re-encodes a JSON document the way renderJSON writes its
// output (numbers kept, no HTML escaping), so a template and its rendering
// can be compared text for text.
func plainJSON(body json.RawMessage) (json.RawMessage, error) {
	var doc any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	return marshalNoEscape(doc)
}

// refNames lists the secret references in s (in context c), in order; an
// error for a malformed one.
func refNames(s string, c template.Context) ([]string, error) {
	var names []string
	_, _, err := template.RewriteString(s, c, func(n string) ([]byte, error) {
		names = append(names, n)
		return nil, nil
	})
	return names, err
}

// sameRefs checks that rendering added no secret reference: data from an
// input, an output or a signal must never make the proxy resolve a secret
// (nor, for the URL, decode into one). The references are compared name
// for name, not merely counted, so data that broke one of the template's
// references and added another would not pass either.
func sameRefs(tmpl, rendered string, c template.Context) error {
	return sameNames(func(s string) ([]string, error) { return refNames(s, c) }, tmpl, rendered)
}

// sameNames is sameRefs with the proxy's own reading of a field (names).
func sameNames(names func(string) ([]string, error), tmpl, rendered string) error {
	want, err := names(tmpl)
	if err != nil {
		return err
	}
	got, err := names(rendered)
	if err != nil || !slices.Equal(got, want) {
		return fmt.Errorf("%w: %w", errExpr, errInjected)
	}
	return nil
}
