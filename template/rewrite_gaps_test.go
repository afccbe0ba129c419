package template_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"rotor.sh/rotor/template"
)

// jsonShape is a JSON document's structure as a byte-at-a-time lexer sees
// it: every byte outside string literals, a marker per string, and whether
// the input ends inside one. It is computed for any input, valid or not, so
// "a value never changes the structure around it" can be checked for
// bodies the proxy would forward without validating them.
func jsonShape(b []byte) string {
	var out strings.Builder
	in, esc := false, false
	for _, c := range b {
		switch {
		case !in:
			if c == '"' {
				in = true
				out.WriteString(`"S`)
			} else {
				out.WriteByte(c)
			}
		case esc:
			esc = false
		case c == '\\':
			esc = true
		case c == '"':
			in = false
			out.WriteByte('"')
		}
	}
	if in {
		out.WriteString("<unterminated>")
	}
	return out.String()
}

// substituted is the decoded document with every reference in every string
// (keys too) replaced by its raw value: what the rewritten body must decode
// to. ok is false when the document cannot be compared that way.
func substituted(v any, resolve template.ResolveFunc) (out any, refs int, ok bool) {
	switch x := v.(type) {
	case string:
		s, n, err := template.RewriteString(x, template.ContextRaw, resolve)
		return s, n, err == nil
	case []any:
		res := make([]any, len(x))
		for i, e := range x {
			r, n, ok := substituted(e, resolve)
			if !ok {
				return nil, 0, false
			}
			res[i], refs = r, refs+n
		}
		return res, refs, true
	case map[string]any:
		res := make(map[string]any, len(x))
		for k, e := range x {
			nk, n1, ok1 := substituted(k, resolve)
			r, n2, ok2 := substituted(e, resolve)
			if !ok1 || !ok2 {
				return nil, 0, false
			}
			res[nk.(string)], refs = r, refs+n1+n2
		}
		// Two keys that became equal collapse differently on each side.
		return res, refs, len(res) == len(x)
	}
	return v, 0, true
}

func decodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("trailing data")
	}
	return v, nil
}

// normalize re-encodes v so invalid UTF-8 becomes U+FFFD per byte on both
// sides (what the JSON encoder does to a value).
func normalize(t *testing.T, v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	n, err := decodeJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkJSONRewrite asserts the rewriter's JSON property for one input and
// one value (every reference resolves to value).
func checkJSONRewrite(t *testing.T, in []byte, value string) {
	t.Helper()
	resolve := func(string) ([]byte, error) { return []byte(value), nil }
	out, refs, err := template.RewriteString(string(in), template.ContextJSON, resolve)
	if err != nil {
		return // refusing is always safe
	}
	if got, want := jsonShape([]byte(out)), jsonShape(in); got != want {
		t.Fatalf("rewriting %q with value %q changed the JSON structure:\n in  %q\n out %q\n body %q", in, value, want, got, out)
	}
	vin, err := decodeJSON(in)
	if err != nil {
		return
	}
	vout, err := decodeJSON([]byte(out))
	if err != nil {
		t.Fatalf("valid JSON %q rewritten with value %q is no longer valid: %v\n%q", in, value, err, out)
	}
	want, n, ok := substituted(vin, resolve)
	if !ok || n != refs {
		// References spelled with JSON escapes (\u0024{{...) are not
		// references to the raw rewriter: nothing to compare.
		return
	}
	if !reflect.DeepEqual(vout, normalize(t, want)) {
		t.Fatalf("rewriting %q with value %q: decoded %#v, want the input with the values in place %#v", in, value, vout, want)
	}
}

// Values that would end the string early, right after a backslash: the
// rewriter must refuse (or keep the structure), never let the value out.
func TestRewriteJSONAfterBackslash(t *testing.T) {
	for _, in := range []string{
		`{"a":"\${{ secrets.A }}"}`, `["\${{ secrets.A }}]`, `{"a":"x\${{ secrets.A }}","b":1}`,
		`{"a":"\\\${{ secrets.A }}"}`, `"\$<< secrets.A >>"`,
	} {
		for _, v := range []string{`"`, `"}`, `", "admin": true, "x": "`, `\`, "x"} {
			checkJSONRewrite(t, []byte(in), v)
		}
		if _, _, err := template.RewriteString(in, template.ContextJSON, func(string) ([]byte, error) { return []byte("v"), nil }); !errors.Is(err, template.ErrOutsideString) {
			t.Errorf("%s: err %v, want ErrOutsideString (a reference right after a backslash is not a string's content)", in, err)
		}
	}
	// An escaped backslash before the reference is fine: the value is
	// inside the string.
	checkJSONRewrite(t, []byte(`{"a":"\\${{ secrets.A }}"}`), `"}`)
	out, _, err := template.RewriteString(`{"a":"\\${{ secrets.A }}"}`, template.ContextJSON, func(string) ([]byte, error) { return []byte(`"}`), nil })
	if err != nil || out != `{"a":"\\\"}"}` {
		t.Fatalf("after an escaped backslash: %q %v", out, err)
	}
}

// FuzzRewriteJSONShape: for any body and any value, a JSON rewrite either
// fails or keeps the body's structure byte for byte outside strings, and a
// valid document decodes to the input with the values in place.
func FuzzRewriteJSONShape(f *testing.F) {
	for _, s := range [][2]string{
		{`{"a":"${{ secrets.A }}"}`, `"}, "admin": true, "x": "`},
		{`{"a":"\${{ secrets.A }}"}`, `"}`},
		{`["\${{ secrets.A }}]`, `"`},
		{`{"a":"\\${{ secrets.A }}"}`, `\`},
		{`{"${{ secrets.K }}":[1,"x${{ secrets.K }}y",{"z":"$<< secrets.K >>"}]}`, "k\x00\u2028<&>"},
		{`{"a":"\u0024{{ secrets.A }}"}`, "v"},
		{`{"a": ${{ secrets.A }}}`, "1"},
		{`"${{ secrets.A }}`, "\xff\xfe"},
		{`{"a":"b\"${{ secrets.A }}\""}`, `\"`},
	} {
		f.Add([]byte(s[0]), s[1])
	}
	f.Fuzz(func(t *testing.T, in []byte, value string) {
		checkJSONRewrite(t, in, value)
	})
}
