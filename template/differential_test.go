package template

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
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
	for iter := range 150 {
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

// The differential test above compares two paths through the same scanner,
// so a change in the scanner itself passes it. These pin the scanner's
// decisions against literal expectations, at each limit.

func resolveAny(name string) ([]byte, error) { return []byte("<" + name + ">"), nil }

func TestScannerLimits(t *testing.T) {
	sp := func(n int) string { return strings.Repeat(" ", n) }
	for _, tc := range []struct {
		ctx  Context
		in   string
		want string // with err set: a substring of the error
		err  error
	}{
		// Name characters at the edges of each class.
		{ContextRaw, "${{ secrets.AZ }}", "<AZ>", nil},
		{ContextRaw, "${{ secrets.Z09_ }}", "<Z09_>", nil},
		{ContextRaw, "${{ secrets.X9 }}", "<X9>", nil},
		{ContextRaw, "${{ secrets.X0 }}", "<X0>", nil},
		// A lower-case name is read whole and refused by the naming rule
		// (the error says what names look like), not cut at the first
		// lower-case letter.
		{ContextRaw, "${{ secrets.Xa }}", "Xa\" must match", ErrReference},
		{ContextRaw, "${{ secrets.Xz }}", "Xz\" must match", ErrReference},
		{ContextRaw, "${{ secrets.Xm }}", "Xm\" must match", ErrReference},
		// Up to maxNearGap spaces after '$' is a near-miss; more is text.
		{ContextRaw, "$" + sp(maxNearGap) + "{{ secrets.A }}", "", ErrReference},
		{ContextRaw, "$" + sp(maxNearGap+1) + "{{ secrets.A }}", "$" + sp(maxNearGap+1) + "{{ secrets.A }}", nil},
		// Up to maxRefSpace spaces on each side of the name.
		{ContextRaw, "${{" + sp(maxRefSpace) + "secrets.A }}", "<A>", nil},
		{ContextRaw, "${{" + sp(maxRefSpace+1) + "secrets.A }}", "${{" + sp(maxRefSpace+1) + "secrets.A }}", nil},
		{ContextRaw, "${{ secrets.A" + sp(maxRefSpace) + "}}", "<A>", nil},
		{ContextRaw, "${{ secrets.A" + sp(maxRefSpace+1) + "}}", "", ErrReference},
		// A short word ending in '.' is not like "secrets.".
		{ContextRaw, "${{ ab.X }}", "${{ ab.X }}", nil},
		{ContextRaw, "${{ secre.X }}", "${{ secre.X }}", nil},
		{ContextRaw, "${{ a.X }}", "${{ a.X }}", nil},
		// Percent-decoding: "%20" has a zero low nibble, "%09" a zero high
		// one (a tab), "%4z" is no escape
		// (so it cannot spell the name A).
		{ContextQuery, "%24%7B%7B%20secrets.A%20%7D%7D", "%3CA%3E", nil},
		{ContextQuery, "%24%7B%7B%09secrets.A%09%7D%7D", "%3CA%3E", nil},
		{ContextQuery, "%24%7B%7B+secrets.%4z+%7D%7D", "", ErrReference},
		{ContextQuery, "%24%7B%7B+secrets.A%0z%7D%7D", "", ErrReference},
		{ContextQuery, "%24%7B%7B+secrets.A+%7D%7D%", "%3CA%3E%", nil},
	} {
		got, _, err := RewriteString(tc.in, tc.ctx, resolveAny)
		if tc.err != nil {
			if !errors.Is(err, tc.err) || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s %.50q: got %q, err %v; want %v", tc.ctx, tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s %.50q: got %q, err %v; want %q", tc.ctx, tc.in, got, err, tc.want)
		}
	}
}

// TestNearMissText: the error shows the near-miss as read, with one space
// standing for any run of spaces, and none when there was none.
func TestNearMissText(t *testing.T) {
	for in, want := range map[string]string{
		"${{secret.A}}":    `"${{secret."`,
		"${{ secret.A }}":  `"${{ secret."`,
		"${{   secret.A}}": `"${{ secret."`,
		"$ {{Secrets.A}}":  `"$ {{Secrets."`,
	} {
		_, _, err := RewriteString(in, ContextRaw, resolveAny)
		if !errors.Is(err, ErrReference) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want it to quote %s", in, err, want)
		}
	}
}

// TestReferenceCounts: the counts the proxy reports (audit, metrics) are
// the number of references and the bytes of reference text replaced.
func TestReferenceCounts(t *testing.T) {
	in := "a ${{ secrets.A }} b $<< secrets.TOKEN >> c %24%7B%7B+secrets.A+%7D%7D"
	refText := len("${{ secrets.A }}") + len("$<< secrets.TOKEN >>") + len("%24%7B%7B+secrets.A+%7D%7D")
	if _, n, err := RewriteString(in, ContextQuery, resolveTest); err != nil || n != 3 {
		t.Fatalf("RewriteString: %d references, %v", n, err)
	}
	for _, size := range []int{1, 7, readChunk} {
		rw := NewRewriter(&chunkReader{b: []byte(in), sizes: []int{size}}, ContextQuery, resolveTest)
		if _, err := io.ReadAll(rw); err != nil {
			t.Fatal(err)
		}
		if rw.References() != 3 || rw.ReplacedBytes() != int64(refText) {
			t.Fatalf("chunk %d: %d references, %d bytes; want 3, %d", size, rw.References(), rw.ReplacedBytes(), refText)
		}
	}
}

// recordingReader remembers the buffers it was asked to fill.
type recordingReader struct {
	r    io.Reader
	bufs [][]byte
}

func (r *recordingReader) Read(p []byte) (int, error) {
	r.bufs = append(r.bufs, p)
	return r.r.Read(p)
}

// TestFastPathZeroCopy: a read of fastPathMin bytes or more with nothing
// pending goes straight into the caller's buffer (the point of readFast),
// up to the first '$', and the rest is still rewritten.
func TestFastPathZeroCopy(t *testing.T) {
	body := strings.Repeat("x", 3*fastPathMin) + "${{ secrets.A }}" + strings.Repeat("y", 3*fastPathMin)
	src := &recordingReader{r: strings.NewReader(body)}
	rw := NewRewriter(src, ContextRaw, resolveTest)
	p := make([]byte, fastPathMin)
	n, err := rw.Read(p)
	if err != nil || n != fastPathMin || len(src.bufs) != 1 || &src.bufs[0][0] != &p[0] {
		t.Fatalf("first read of %d bytes: n %d, err %v, source filled the caller's buffer: %v", len(p), n, err, len(src.bufs) == 1 && &src.bufs[0][0] == &p[0])
	}
	rest, err := io.ReadAll(rw)
	if err != nil || string(p)+string(rest) != strings.Replace(body, "${{ secrets.A }}", "alpha", 1) {
		t.Fatalf("rest: %d bytes, %v", len(rest), err)
	}
	// After the '$' was handed over, the pending buffer has room for a
	// whole readChunk, so the general path does not grow it again.
	src = &recordingReader{r: strings.NewReader(body)}
	rw = NewRewriter(src, ContextRaw, resolveTest)
	p = make([]byte, 4*fastPathMin)
	if n, err := rw.Read(p); err != nil || n != 3*fastPathMin {
		t.Fatalf("read up to '$': n %d, err %v", n, err)
	}
	if len(rw.in) == 0 || cap(rw.in)-len(rw.in) < readChunk {
		t.Fatalf("pending %d bytes with room for %d", len(rw.in), cap(rw.in)-len(rw.in))
	}
}

// TestSourceErrorStops: a source's read error (not EOF) ends the stream
// with that error.
func TestSourceErrorStops(t *testing.T) {
	boom := errors.New("boom")
	for _, size := range []int{16, fastPathMin} {
		src := io.MultiReader(strings.NewReader("abc ${{ secrets.A }} def"), iotest.ErrReader(boom))
		rw := NewRewriter(src, ContextRaw, resolveTest)
		var err error
		for range 100 {
			if _, err = rw.Read(make([]byte, size)); err != nil {
				break
			}
		}
		if !errors.Is(err, boom) || !errors.Is(rw.Err(), boom) {
			t.Fatalf("read size %d: err %v, Err() %v", size, err, rw.Err())
		}
	}
}
