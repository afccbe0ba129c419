package template

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// appendWhole is AppendRewrite as the proxy uses it: src itself when
// nothing could start a reference, else the rewritten bytes.
func appendWhole(src []byte, c Context, max int) ([]byte, Rewritten, error) {
	prefix := []byte("keep:")
	out, n, err := AppendRewrite(prefix, src, c, resolveTest, max)
	if !bytes.HasPrefix(out, prefix) {
		panic("AppendRewrite lost dst")
	}
	if err == nil && len(out) == len(prefix) && n.Refs == 0 && len(src) > 0 {
		return src, n, nil
	}
	return out[len(prefix):], n, err
}

// TestAppendRewriteMatchesStreaming: the one-pass rewrite of a whole body
// gives exactly what the streaming Rewriter gives (bytes, reference count,
// replaced bytes, or a failure), over random bodies in every context.
func TestAppendRewriteMatchesStreaming(t *testing.T) {
	rnd := rand.New(rand.NewPCG(15, 2026))
	for iter := range 400 {
		body := randomBody(rnd)
		c := Context(rnd.IntN(len(contextNames)))
		rw := NewRewriter(bytes.NewReader(body), c, resolveTest)
		want, wantErr := io.ReadAll(rw)
		got, n, gotErr := appendWhole(body, c, 0)
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("iter %d (%s): streamed err %v, whole err %v", iter, c, wantErr, gotErr)
		}
		if wantErr != nil {
			continue
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("iter %d (%s): whole %.80q, streamed %.80q", iter, c, got, want)
		}
		if n.Refs != rw.References() || n.Bytes != rw.ReplacedBytes() {
			t.Fatalf("iter %d: whole %+v, streamed %d refs %d bytes", iter, n, rw.References(), rw.ReplacedBytes())
		}
	}
}

// TestAppendRewriteUntouched: a body with nothing that could start a
// reference comes back as dst alone (no copy), and so does one with a '%'
// where '%' cannot start one.
func TestAppendRewriteUntouched(t *testing.T) {
	for _, tc := range []struct {
		c    Context
		body string
	}{{ContextJSON, `{"a":"b"}`}, {ContextRaw, "100% plain"}, {ContextForm, "a=b&c=d"}} {
		out, n, err := AppendRewrite(nil, []byte(tc.body), tc.c, func(string) ([]byte, error) {
			t.Fatal("resolved a name in a body with no reference")
			return nil, nil
		}, 0)
		if err != nil || out != nil || n.Refs != 0 {
			t.Fatalf("%s %q: out %q, %+v, %v", tc.c, tc.body, out, n, err)
		}
	}
}

// TestAppendRewriteLimit: past its bound the rewrite stops before
// resolving another reference, whatever the values' length.
func TestAppendRewriteLimit(t *testing.T) {
	long := strings.Repeat("v", 1000)
	var resolved int
	resolve := func(string) ([]byte, error) { resolved++; return []byte(long), nil }
	body := []byte(strings.Repeat("${{ secrets.A }} ", 100))
	out, _, err := AppendRewrite(nil, body, ContextRaw, resolve, 4096)
	if !errors.Is(err, ErrOutputLimit) {
		t.Fatalf("err %v, want ErrOutputLimit", err)
	}
	if resolved != 5 || len(out) > 4096+len(long)+len(body) {
		t.Fatalf("resolved %d values, %d bytes out", resolved, len(out))
	}
	// Under the bound it completes.
	resolved = 0
	if out, n, err := AppendRewrite(nil, body, ContextRaw, resolve, 200_000); err != nil || n.Refs != 100 || len(out) != 100*1001 {
		t.Fatalf("%d bytes, %+v, %v", len(out), n, err)
	}
}

// FuzzAppendRewrite: for any input, the one-pass rewrite and the
// streaming Rewriter agree.
func FuzzAppendRewrite(f *testing.F) {
	for _, s := range []string{"${{ secrets.A }}", `{"a":"${{ secrets.HOSTILE }}"}`, "%24%7B%7B+secrets.A+%7D%7D", "${{ secrets.A", "%2", "$"} {
		for c := range len(contextNames) {
			f.Add([]byte(s), uint8(c))
		}
	}
	f.Fuzz(func(t *testing.T, in []byte, ctx uint8) {
		c := Context(int(ctx) % len(contextNames))
		want, wantErr := io.ReadAll(NewRewriter(bytes.NewReader(in), c, resolveTest))
		got, _, gotErr := appendWhole(in, c, 0)
		if (wantErr == nil) != (gotErr == nil) || wantErr == nil && !bytes.Equal(got, want) {
			t.Fatalf("whole %q (%v), streamed %q (%v)", got, gotErr, want, wantErr)
		}
	})
}

// TestMayRewrite: a body MayRewrite passes over is one the streaming
// Rewriter gives back unchanged with no reference (so the proxy may send
// it as it came, without an output buffer), over random bodies in every
// context; a '$' may start a reference anywhere, a '%' only where the
// context percent-decodes.
func TestMayRewrite(t *testing.T) {
	rnd := rand.New(rand.NewPCG(16, 2026))
	skipped := 0
	for iter := range 2000 {
		body := randomBody(rnd)
		if rnd.IntN(2) == 0 {
			body = bytes.Map(func(r rune) rune {
				if r == '$' || r == '%' {
					return 'x'
				}
				return r
			}, body)
		}
		c := Context(rnd.IntN(len(contextNames)))
		if MayRewrite(body, c) {
			continue
		}
		skipped++
		rw := NewRewriter(bytes.NewReader(body), c, resolveTest)
		got, err := io.ReadAll(rw)
		if err != nil || !bytes.Equal(got, body) || rw.References() != 0 {
			t.Fatalf("iter %d (%s): MayRewrite false, but the Rewriter gave %.80q (%d refs, %v) for %.80q", iter, c, got, rw.References(), err, body)
		}
	}
	if skipped == 0 {
		t.Fatal("no body without a candidate byte was tried")
	}
	for _, tc := range []struct {
		c    Context
		body string
		want bool
	}{
		{ContextJSON, `{"a":"${{ secrets.A }}"}`, true}, {ContextJSON, `{"a":"%24%7B%7B"}`, false},
		{ContextRaw, "100% plain", false}, {ContextForm, "a=%24%7B%7B+secrets.A+%7D%7D", true},
		{ContextQuery, "a=%24", true}, {ContextPath, "/%24", true}, {ContextHeader, "x%24", false}, {ContextForm, "a=b", false},
	} {
		if got := MayRewrite([]byte(tc.body), tc.c); got != tc.want {
			t.Errorf("MayRewrite(%q, %s) = %v, want %v", tc.body, tc.c, got, tc.want)
		}
	}
}
