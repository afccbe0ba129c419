package workflow

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"rotor.sh/rotor/storage"
)

func mustPlan(t *testing.T, def string) *plan {
	t.Helper()
	d, err := ParseDefinition([]byte(def))
	if err != nil {
		t.Fatal(err)
	}
	p, err := compile(d)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func testRun(input string) *storage.WorkflowRun {
	return &storage.WorkflowRun{ID: "run_1", Input: json.RawMessage(input),
		Steps: []storage.StepState{{ID: "fetch", Status: storage.StepCompleted, Output: json.RawMessage(`{"email":"a+b@example.com","n":3,"tags":["x","y"],"nested":{"ok":true}}`)},
			{ID: "wait", Status: storage.StepCompleted}, {ID: "send", Status: storage.StepRunning}},
		Signals: []storage.RunSignal{{Name: "approved", Data: json.RawMessage(`{"user":"ann"}`), UsedBy: "wait"}}}
}

const testDef = `{"steps":[
	{"id":"fetch","request":{"method":"GET","url":"https://api.example.com/u"}},
	{"id":"wait","wait_for_signal":"approved"},
	{"id":"send","request":{"method":"POST","url":"https://api.example.com/p/${{ input.id }}/x?q=${{ input.id }}&t=${{ secrets.T }}",
		"headers":{"X-By":"${{ signals.approved.data.user }}","Authorization":"Bearer ${{ secrets.T }}"},
		"body":{"email":"${{ steps.fetch.output.email }}","n":"${{ steps.fetch.output.n }}","tag":"${{ steps.fetch.output.tags.1 }}",
			"all":"${{ steps.fetch.output.nested }}","s":"${{ steps.fetch.status }}","text":"run ${{ run.id }}: ${{ steps.fetch.output.n }}","k":"${{ secrets.T }}"}}}
]}`

// TestBuild: each value is encoded for where it lands, a whole-string
// expression keeps its JSON type, and secret references are left as they
// are for the proxy.
func TestBuild(t *testing.T) {
	p := mustPlan(t, testDef)
	b, err := build(p.steps[2], testRun(`{"id":"a b/c?d"}`))
	if err != nil {
		t.Fatal(err)
	}
	if b.url != "https://api.example.com/p/a%20b%2Fc%3Fd/x?q=a+b%2Fc%3Fd&t=${{ secrets.T }}" {
		t.Fatalf("url = %s", b.url)
	}
	if b.header.Get("X-By") != "ann" || b.header.Get("Authorization") != "Bearer ${{ secrets.T }}" || b.header.Get("Content-Type") != "application/json" {
		t.Fatalf("headers = %v", b.header)
	}
	var body map[string]any
	if err := json.Unmarshal(b.body, &body); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"email": "a+b@example.com", "n": float64(3), "tag": "y", "all": map[string]any{"ok": true}, "s": "completed",
		"text": "run run_1: 3", "k": "${{ secrets.T }}"}
	for k, v := range want {
		if gb, _ := json.Marshal(body[k]); string(gb) != mustJSON(v) {
			t.Errorf("body[%s] = %s, want %s", k, gb, mustJSON(v))
		}
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestAttackInjectedReference: data (a run's input, a step's output, a
// signal) that holds a secret reference must never reach the proxy as one:
// it would make the proxy resolve a secret the definition never named, and
// send it wherever the data goes.
func TestAttackInjectedReference(t *testing.T) {
	p := mustPlan(t, testDef)
	for _, in := range []string{
		`{"id":"${{ secrets.OTHER }}"}`,
		`{"id":"$<< secrets.OTHER >>"}`,
		`{"id":"${{ secret.OTHER }}"}`, // a near-miss: the proxy refuses it
	} {
		_, err := build(p.steps[2], testRun(in))
		if !errors.Is(err, errExpr) {
			t.Errorf("input %s: build = %v, want an expression failure", in, err)
		}
	}
	// Through a header and a JSON body too.
	hp := mustPlan(t, `{"steps":[{"id":"a","request":{"method":"POST","url":"https://h.example/","headers":{"X":"${{ input.v }}"},"body":{"b":"${{ input.v }}"}}}]}`)
	for _, in := range []string{`{"v":"${{ secrets.OTHER }}"}`, `{"v":{"x":"${{ secrets.OTHER }}"}}`} {
		if _, err := build(hp.steps[0], testRun(in)); !errors.Is(err, errExpr) {
			t.Errorf("input %s: build = %v, want an expression failure", in, err)
		}
	}
	// Harmless dollars pass, and so does a reference percent-encoded in
	// the data: escaping it again keeps the proxy from decoding it.
	if _, err := build(hp.steps[0], testRun(`{"v":"costs $5 {{x}}"}`)); err != nil {
		t.Fatal(err)
	}
	b, err := build(p.steps[2], testRun(`{"id":"%24%7B%7B%20secrets.OTHER%20%7D%7D"}`))
	if err != nil || !strings.Contains(b.url, "%2524%257B%257B") {
		t.Fatalf("percent-encoded data: %v %s", err, b.url)
	}
}

func TestBuildFailures(t *testing.T) {
	p := mustPlan(t, testDef)
	r := testRun(`{}`)
	if _, err := build(p.steps[2], r); !errors.Is(err, errExpr) || !strings.Contains(err.Error(), `no field "id"`) {
		t.Fatalf("missing input field: %v", err)
	}
	r = testRun(`{"id":"ok"}`)
	r.Signals = nil
	if _, err := build(p.steps[2], r); !errors.Is(err, errExpr) {
		t.Fatalf("no signal: %v", err)
	}
	hp := mustPlan(t, `{"steps":[{"id":"a","request":{"method":"GET","url":"https://h.example/","headers":{"X":"${{ input.v }}"}}}]}`)
	if _, err := build(hp.steps[0], testRun(`{"v":"a\r\nInjected: 1"}`)); !errors.Is(err, errExpr) {
		t.Fatalf("header injection: %v", err)
	}
}

func TestOutputOf(t *testing.T) {
	if o, tr := outputOf([]byte(`{"a": 1}`), "application/json; charset=utf-8"); string(o) != `{"a":1}` || tr {
		t.Fatalf("json: %s %v", o, tr)
	}
	if o, _ := outputOf([]byte(`plain <b>`), "text/plain"); string(o) != `"plain \u003cb\u003e"` {
		t.Fatalf("text: %s", o)
	}
	big := strings.Repeat("é", MaxOutputBytes) // 2 bytes each: cut mid-rune
	o, tr := outputOf([]byte(`"`+big+`"`), "application/json")
	if !tr || len(o) > MaxOutputBytes+16 || !json.Valid(o) {
		t.Fatalf("truncated: %v %d valid=%v", tr, len(o), json.Valid(o))
	}
}

// FuzzDefinition: any definition either fails validation with
// ErrInvalidWorkflow or compiles; building its requests never panics.
func FuzzDefinition(f *testing.F) {
	f.Add([]byte(testDef), []byte(`{"id":"x"}`))
	f.Add([]byte(`{"steps":[{"id":"a","sleep":"1d"}]}`), []byte(`{}`))
	f.Add([]byte(`{"steps":[{"id":"a","request":{"method":"GET","url":"https://a/${{ input.x.0 }}${{"}}]}`), []byte(`{"x":[1]}`))
	f.Fuzz(func(t *testing.T, def, input []byte) {
		d, err := ParseDefinition(def)
		if err != nil {
			if !errors.Is(err, ErrInvalidWorkflow) {
				t.Fatalf("parse error %v is not ErrInvalidWorkflow", err)
			}
			return
		}
		p, err := compile(d)
		if err != nil {
			if !errors.Is(err, ErrInvalidWorkflow) {
				t.Fatalf("compile error %v is not ErrInvalidWorkflow", err)
			}
			return
		}
		if !json.Valid(input) {
			input = []byte(`{}`)
		}
		r := &storage.WorkflowRun{ID: "run_f", Input: input}
		for _, ps := range p.steps {
			r.Steps = append(r.Steps, storage.StepState{ID: ps.ID, Status: storage.StepCompleted, Output: input})
		}
		for _, ps := range p.steps {
			if ps.kind == KindRequest {
				_, _ = build(ps, r)
			}
		}
	})
}

// TestBuildAngleReferenceInStoredBody: a body's `$<< secrets.X >>`
// survives the definition's trip through storage, where encoding/json
// writes `<` as \u003c, and still reaches the proxy as one reference (it
// used to fail every run with expression_failed, the escaped template
// counting no reference where the rendered body had one).
func TestBuildAngleReferenceInStoredBody(t *testing.T) {
	d, err := ParseDefinition([]byte(`{"steps":[{"id":"send","request":{"method":"POST","url":"https://api.example.com/p",
		"body":{"k":"$<< secrets.T >>","text":"a <b> & $<< secrets.T >> for ${{ input.id }}"}}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	stored, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(stored), `\u003c`) {
		t.Fatalf("the round trip no longer escapes <; this test needs another way to store it: %s", stored)
	}
	var back Definition
	if err := json.Unmarshal(stored, &back); err != nil {
		t.Fatal(err)
	}
	p, err := compile(back)
	if err != nil {
		t.Fatal(err)
	}
	b, err := build(p.steps[0], &storage.WorkflowRun{ID: "run_1", Input: json.RawMessage(`{"id":"x"}`)})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	var body map[string]string
	if err := json.Unmarshal(b.body, &body); err != nil {
		t.Fatal(err)
	}
	if body["k"] != "$<< secrets.T >>" || body["text"] != "a <b> & $<< secrets.T >> for x" {
		t.Fatalf("body = %s", b.body)
	}
	if !strings.Contains(string(b.body), "$<< secrets.T >>") {
		t.Fatalf("the proxy would not see the reference: %s", b.body)
	}
}
