package template

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// The streaming Rewriter has fast paths (readFast's zero-copy reads, fill's
// buffer growth, jsonLex.feed's vectorized jumps, step's hold-back of a
// trailing "%" or "%2") that must give exactly what the slow path gives:
// RewriteString over the whole input. Mutation testing (issue 13) showed the
// fuzz seeds alone let these drift; this is the same property over random
// inputs, chunkings and read sizes, deterministic and bounded.

// pieces are what random inputs are made of: references in every spelling,
// their fragments, JSON string syntax, and filler long enough to take the
// fast path (reads of fastPathMin bytes or more).
var pieces = []string{
	"${{ secrets.A }}", "$<< secrets.TOKEN >>", "${{secrets.HOSTILE}}", "${{ secrets.QUOTEEND }}",
	"%24%7B%7B+secrets.A+%7D%7D", "%24%7b%7b%20secrets.TOKEN%20%7d%7d", "%24%3C%3C+secrets.A+%3E%3E",
	"$", "%", "%2", "%24", "%7B", "%%", "%2%", "$$", "${", "${{", "{{", "}}", "+",
	`"`, `\`, `\"`, `\\`, `":"`, `{"k":"`, `"}`, ",", " ", "a", "xyz",
	"${{ env.X }}", "${HOME}", "$<<EOF", "$5",
}

func randomBody(r *rand.Rand) []byte {
	var b []byte
	for n := r.IntN(40); n >= 0; n-- {
		switch r.IntN(10) {
		case 0:
			b = append(b, strings.Repeat("f", r.IntN(3*fastPathMin))...)
		case 1:
			b = append(b, strings.Repeat("q", r.IntN(64))...)
		default:
			b = append(b, pieces[r.IntN(len(pieces))]...)
		}
	}
	return b
}

// sizedReader reads from r into buffers of random sizes, some above
// fastPathMin, some tiny.
func readAllSized(r io.Reader, rnd *rand.Rand) ([]byte, error) {
	var out []byte
	sizes := []int{1, 2, 3, 7, 64, 511, fastPathMin - 1, fastPathMin, fastPathMin + 1, 3 * fastPathMin, readChunk + 5}
	for range 1 << 20 {
		p := make([]byte, sizes[rnd.IntN(len(sizes))])
		n, err := r.Read(p)
		out = append(out, p[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
	return out, errors.New("reader never ended")
}

func TestStreamingFastPathsMatchWhole(t *testing.T) {
	rnd := rand.New(rand.NewPCG(13, 2026))
	for iter := range 400 {
		body := randomBody(rnd)
		c := Context(rnd.IntN(len(contextNames)))
		want, wantRefs, wantErr := RewriteString(string(body), c, resolveTest)
		var chunks []int
		for range 1 + rnd.IntN(4) {
			chunks = append(chunks, []int{1, 2, 3, 5, 100, fastPathMin, readChunk, 1 << 20}[rnd.IntN(8)])
		}
		rw := NewRewriter(&chunkReader{b: body, sizes: chunks}, c, resolveTest)
		got, gotErr := readAllSized(rw, rnd)
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("iter %d (%s, chunks %v): whole err %v, streamed err %v", iter, c, chunks, wantErr, gotErr)
		}
		if wantErr != nil {
			if rw.Err() == nil {
				t.Fatalf("iter %d: Err() nil after a failed stream", iter)
			}
			continue
		}
		if string(got) != want {
			i := 0
			for i < min(len(got), len(want)) && got[i] == want[i] {
				i++
			}
			t.Fatalf("iter %d (%s, chunks %v): streamed output differs at byte %d of %d: %.60q vs %.60q",
				iter, c, chunks, i, len(body), got[i:], want[i:])
		}
		if rw.References() != wantRefs || rw.Err() != nil {
			t.Fatalf("iter %d: %d references streamed, %d whole (Err %v)", iter, rw.References(), wantRefs, rw.Err())
		}
	}
}

// TestJSONLexPiecewise: feeding JSON in any number of pieces leaves the
// same state as the byte-at-a-time tracker, at every cut.
func TestJSONLexPiecewise(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 13))
	alphabet := []string{`"`, `\`, "a", "b", `\"`, `\\`, "xyz", `"\`, "$"}
	for range 3000 {
		var b []byte
		for n := rnd.IntN(24); n >= 0; n-- {
			b = append(b, alphabet[rnd.IntN(len(alphabet))]...)
		}
		var j jsonLex
		ref := jsonLex{}
		for rest := b; len(rest) > 0; {
			k := 1 + rnd.IntN(len(rest))
			j.feed(rest[:k])
			ref = refLex(ref, rest[:k])
			if j != ref {
				t.Fatalf("after %q of %q: %+v, want %+v", b[:len(b)-len(rest)+k], b, j, ref)
			}
			rest = rest[k:]
		}
	}
}

// TestContainsCandidate: the no-copy early return is taken exactly when
// there is nothing to rewrite, so a value without '$' (or '%' where it may
// encode one) costs no allocation and one with them is always scanned.
func TestContainsCandidate(t *testing.T) {
	for _, tc := range []struct {
		s       string
		percent bool
		want    bool
	}{
		{"", true, false},
		{"plain", true, false},
		{"$", false, true},
		{"x$", false, true},
		{"%", false, false},
		{"%", true, true},
		{"ab%", true, true},
		{"ab%", false, false},
	} {
		if got := containsCandidate(tc.s, tc.percent); got != tc.want {
			t.Errorf("containsCandidate(%q, %v) = %v", tc.s, tc.percent, got)
		}
	}
	// The trailing "%2" of a query is decided at once when whole: it is
	// not a reference, and it passes unchanged.
	for _, s := range []string{"a%2", "a%", "%2", "%24", "100%"} {
		if got, n, err := RewriteString(s, ContextQuery, resolveTest); err != nil || got != s || n != 0 {
			t.Errorf("RewriteString(%q) = %q, %d, %v", s, got, n, err)
		}
	}
}

// TestHoldBackTrailingPercent: a "%" or "%2" at the end of a chunk is held
// until the next one decides it; nothing else is held back.
func TestHoldBackTrailingPercent(t *testing.T) {
	for _, tc := range []struct {
		in   string
		used int
	}{
		{"abc%", 3},
		{"abc%2", 3},
		{"abc%24", 3}, // could be the start of %24%7B...: needs more
		{"abc%2x", 6},
		{"abcd", 4},
		{"a%bc", 4},
		{"%", 0},
		{"%2", 0},
		{"ab%x", 2}, // "%x" is decided by the byte after it
	} {
		rw := rewriter{ctx: ContextQuery, resolve: resolveTest}
		out, used, err := rw.step(nil, []byte(tc.in), false)
		if err != nil || used != tc.used || !bytes.Equal(out, []byte(tc.in[:used])) {
			t.Errorf("step(%q) = %q, %d, %v; want %d used", tc.in, out, used, err, tc.used)
		}
		// At EOF nothing is held.
		rw = rewriter{ctx: ContextQuery, resolve: resolveTest}
		if out, used, err := rw.step(nil, []byte(tc.in), true); err != nil || used != len(tc.in) || string(out) != tc.in {
			t.Errorf("step(%q, EOF) = %q, %d, %v", tc.in, out, used, err)
		}
	}
}
