package template

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"testing"
	"testing/iotest"
)

var testSecrets = map[string]string{
	"A":        "alpha",
	"TOKEN":    "tok-123",
	"HOSTILE":  "a\"b\\c/d e&f=g?h#i%j+k<l>m\u2028n",
	"CRLF":     "ok\r\nX-Injected: 1",
	"NUL":      "a\x00b",
	"TAB":      "a\tb",
	"UNICODE":  "ключ🔑",
	"SLASHES":  "../../admin",
	"QUOTEEND": `"}, "admin": true, "x": "`,
}

func resolveTest(name string) ([]byte, error) {
	v, ok := testSecrets[name]
	if !ok {
		return nil, fmt.Errorf("secret %s not found", name)
	}
	return []byte(v), nil
}

func TestRewriteContexts(t *testing.T) {
	cases := []struct {
		ctx     Context
		in      string
		want    string
		wantErr error
	}{
		// Both syntaxes, spacing.
		{ContextRaw, "${{ secrets.A }}", "alpha", nil},
		{ContextRaw, "${{secrets.A}}", "alpha", nil},
		{ContextRaw, "$<<  secrets.A  >>", "alpha", nil},
		{ContextRaw, "$<<secrets.A>>", "alpha", nil},
		{ContextRaw, "x${{\tsecrets.A\t}}y${{ secrets.TOKEN }}z", "xalphaytok-123z", nil},
		// Look-alikes pass untouched.
		{ContextRaw, "${{ env.X }} $<<x $$ ${HOME}", "${{ env.X }} $<<x $$ ${HOME}", nil},
		// Near-misses are refused (more in nearmiss_test.go).
		{ContextRaw, "$ {{ secrets.A }}", "", ErrReference},
		{ContextRaw, "${ secrets.A }", "", ErrReference},
		{ContextRaw, "${{ SECRETS.A }}", "", ErrReference},
		{ContextRaw, "${{ secretsXA }}", "${{ secretsXA }}", nil},
		{ContextRaw, "price: $5, ${{", "price: $5, ${{", nil},
		// Committed references that are malformed are errors.
		{ContextRaw, "${{ secrets.lower }}", "", ErrReference},
		{ContextRaw, "${{ secrets.A-B }}", "", ErrReference},
		{ContextRaw, "${{ secrets. }}", "", ErrReference},
		{ContextRaw, "${{ secrets.A }", "", ErrReference},
		{ContextRaw, "${{ secrets.A >>", "", ErrReference},
		{ContextRaw, "$<< secrets.A }}", "", ErrReference},
		{ContextRaw, "${{ secrets.A", "", ErrReference},
		{ContextRaw, "${{ secrets." + strings.Repeat("A", 129) + " }}", "", ErrReference},
		// Raw bodies take the value as is.
		{ContextRaw, "v=${{ secrets.HOSTILE }}", "v=" + testSecrets["HOSTILE"], nil},
		// Headers: as is, but control characters refused.
		{ContextHeader, "Bearer ${{ secrets.TOKEN }}", "Bearer tok-123", nil},
		{ContextHeader, "${{ secrets.TAB }}", "a\tb", nil},
		{ContextHeader, "${{ secrets.CRLF }}", "", ErrValueRefused},
		{ContextHeader, "${{ secrets.NUL }}", "", ErrValueRefused},
		// JSON: escaped inside strings; outside a string is an error.
		{ContextJSON, `{"k":"${{ secrets.HOSTILE }}"}`, `{"k":"a\"b\\c/d e\u0026f=g?h#i%j+k\u003cl\u003em\u2028n"}`, nil},
		{ContextJSON, `{"k":"${{ secrets.QUOTEEND }}"}`, `{"k":"\"}, \"admin\": true, \"x\": \""}`, nil},
		{ContextJSON, `{"k":"pre ${{ secrets.A }} post","n":"\"${{ secrets.TOKEN }}\""}`, `{"k":"pre alpha post","n":"\"tok-123\""}`, nil},
		{ContextJSON, `{"k": ${{ secrets.A }}}`, "", ErrOutsideString},
		{ContextJSON, `{"a":"\\", "k": ${{ secrets.A }}}`, "", ErrOutsideString},
		{ContextJSON, `{"price":"$5","k":"${{ env.X }}"}`, `{"price":"$5","k":"${{ env.X }}"}`, nil},
		// Form bodies: percent-encoded references, query-escaped values.
		{ContextForm, "a=1&t=%24%7B%7B+secrets.HOSTILE+%7D%7D&b=2", "a=1&t=" + url.QueryEscape(testSecrets["HOSTILE"]) + "&b=2", nil},
		{ContextForm, "t=${{ secrets.A }}", "t=alpha", nil},
		// URL path: raw or encoded in any mix; values path-escaped.
		{ContextPath, "/v1/${{%20secrets.SLASHES%20}}/x", "/v1/" + url.PathEscape("../../admin") + "/x", nil},
		{ContextPath, "/v1/%24%7B%7B%20secrets.A%20%7D%7D", "/v1/alpha", nil},
		{ContextPath, "/v1/%24%7b%7b%20secrets.A%20%7d%7d", "/v1/alpha", nil},
		{ContextPath, "/v1/$%3C%3Csecrets.A%3E%3E", "/v1/alpha", nil},
		{ContextPath, "/a%20b/100%25", "/a%20b/100%25", nil},
		// URL query.
		{ContextQuery, "token=${{%20secrets.HOSTILE%20}}&x=1", "token=" + url.QueryEscape(testSecrets["HOSTILE"]) + "&x=1", nil},
		{ContextQuery, "token=%24%7B%7B+secrets.TOKEN+%7D%7D", "token=tok-123", nil},
		{ContextQuery, "q=%ZZ&r=%", "q=%ZZ&r=%", nil},
		{ContextQuery, "t=%24%7B%7B+secrets.MISSING+%7D%7D", "", errNotFoundTest},
		// Userinfo (decoded): raw; the url package escapes it.
		{ContextUserinfo, "${{ secrets.HOSTILE }}", testSecrets["HOSTILE"], nil},
		{ContextRaw, "${{ secrets.UNICODE }}", "ключ🔑", nil},
	}
	for _, c := range cases {
		got, _, err := RewriteString(c.in, c.ctx, resolveTest)
		if c.wantErr != nil {
			if err == nil || (c.wantErr != errNotFoundTest && !errors.Is(err, c.wantErr)) {
				t.Errorf("%s %q: err = %v, want %v", c.ctx, c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s %q: %v", c.ctx, c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s %q:\n got %q\nwant %q", c.ctx, c.in, got, c.want)
		}
		if c.ctx == ContextJSON {
			var v any
			if err := json.Unmarshal([]byte(got), &v); err != nil {
				t.Errorf("%q: rewritten JSON is invalid: %v", c.in, err)
			}
		}
	}
	// A hostile value in JSON decodes back to exactly itself.
	got, _, _ := RewriteString(`{"k":"${{ secrets.QUOTEEND }}"}`, ContextJSON, resolveTest)
	var m map[string]string
	if err := json.Unmarshal([]byte(got), &m); err != nil || m["k"] != testSecrets["QUOTEEND"] || len(m) != 1 {
		t.Fatalf("JSON injection: %v %v", m, err)
	}
}

var errNotFoundTest = errors.New("not found")

func TestErrorsNeverHoldValues(t *testing.T) {
	for _, in := range []string{"${{ secrets.CRLF }}", "${{ secrets.NUL }}"} {
		_, _, err := RewriteString(in, ContextHeader, resolveTest)
		if err == nil || strings.Contains(err.Error(), "X-Injected") || strings.Contains(err.Error(), "a\x00b") {
			t.Fatalf("error %v", err)
		}
	}
}

func TestRewriteStringNoAlloc(t *testing.T) {
	s := "a plain header value without references"
	allocs := testing.AllocsPerRun(100, func() {
		out, _, _ := RewriteString(s, ContextHeader, resolveTest)
		if out != s {
			t.Fatal("changed")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocs for a value without references", allocs)
	}
}

// rewriteAll streams in through a Rewriter, reading with the given reader shape.
func rewriteAll(in []byte, c Context, wrap func(io.Reader) io.Reader) ([]byte, error) {
	return io.ReadAll(NewRewriter(wrap(bytes.NewReader(in)), c, resolveTest))
}

func TestStreamingMatchesWhole(t *testing.T) {
	body := []byte(strings.Repeat(`{"t":"${{ secrets.TOKEN }}","x":"`+strings.Repeat("y", 100)+`","p":"%24%7B%7B+secrets.A+%7D%7D $<< secrets.A >> $5"},`, 500))
	for _, c := range []Context{ContextRaw, ContextForm, ContextHeader} {
		want, _, err := RewriteString(string(body), c, resolveTest)
		if err != nil {
			t.Fatal(err)
		}
		for name, wrap := range map[string]func(io.Reader) io.Reader{
			"one byte": iotest.OneByteReader,
			"half":     iotest.HalfReader,
			"whole":    func(r io.Reader) io.Reader { return r },
		} {
			got, err := rewriteAll(body, c, wrap)
			if err != nil || string(got) != want {
				t.Fatalf("%s/%s: streamed output differs (err %v)", c, name, err)
			}
		}
	}
}

func TestStreamingStopsAtError(t *testing.T) {
	body := strings.Repeat("x", 100) + "${{ secrets.MISSING }}" + strings.Repeat("y", 100)
	out, err := io.ReadAll(NewRewriter(strings.NewReader(body), ContextRaw, resolveTest))
	if err == nil || strings.Contains(string(out), "secrets.") || strings.Contains(string(out), "y") {
		t.Fatalf("out %q, err %v", out, err)
	}
}

// chunkReader returns the input in the given chunk sizes, cycling.
type chunkReader struct {
	b     []byte
	sizes []int
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := 1
	if len(c.sizes) > 0 {
		n = c.sizes[c.i%len(c.sizes)]
		c.i++
	}
	n = max(1, min(n, len(p), len(c.b)))
	copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

// FuzzRewrite: rewriting any input in any chunking gives the same bytes (or
// the same failure) as rewriting it whole, and never panics.
func FuzzRewrite(f *testing.F) {
	seeds := []string{
		"${{ secrets.A }}", "$<< secrets.TOKEN >>", `{"a":"${{ secrets.HOSTILE }}"}`,
		"%24%7B%7B+secrets.A+%7D%7D", "${{ secrets.A", "$$<<<{{{", "%2", "%24", "${{ env.X }}",
		"${{ secrets.lower }}", `{"k": ${{ secrets.A }}}`, "${{ secrets.CRLF }}",
	}
	for _, s := range seeds {
		for c := range len(contextNames) {
			f.Add([]byte(s), uint8(c), uint8(3), uint8(7))
		}
	}
	f.Fuzz(func(t *testing.T, in []byte, ctx, s1, s2 uint8) {
		c := Context(int(ctx) % len(contextNames))
		want, _, wantErr := RewriteString(string(in), c, resolveTest)
		got, gotErr := io.ReadAll(NewRewriter(&chunkReader{b: in, sizes: []int{int(s1) + 1, int(s2) + 1}}, c, resolveTest))
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("whole err %v, streamed err %v", wantErr, gotErr)
		}
		if wantErr == nil && string(got) != want {
			t.Fatalf("streamed %q, whole %q", got, want)
		}
	})
}

// refLex is the obvious byte-at-a-time JSON string tracker that jsonLex.feed
// must agree with.
func refLex(j jsonLex, b []byte) jsonLex {
	for _, c := range b {
		switch {
		case !j.inString:
			j.inString = c == '"'
		case j.escaped:
			j.escaped = false
		case c == '\\':
			j.escaped = true
		case c == '"':
			j.inString = false
		}
	}
	return j
}

func FuzzJSONLex(f *testing.F) {
	for _, s := range []string{`{"a":"b\"c\\","d":"\\\""}`, `"\\`, `x"y\`, `""\"`} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, b []byte, cut uint8) {
		var j jsonLex
		k := int(cut) % (len(b) + 1)
		j.feed(b[:k])
		j.feed(b[k:])
		if want := refLex(jsonLex{}, b); j != want {
			t.Fatalf("feed(%q) split at %d = %+v, want %+v", b, k, j, want)
		}
	})
}
