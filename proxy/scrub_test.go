package proxy

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"rotor.sh/rotor/internal/proccpu"
)

// asciiLower folds ASCII letters only, as the matcher does (bytes.ToLower
// also rewrites invalid UTF-8, which moves every offset after it: the
// fuzzer found a text with a byte 0x90 that the reference then misread).
func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		out[i] = foldASCII[c]
	}
	return out
}

// naiveLongest is the reference for the matcher: for each end offset, the
// longest pattern ending there (the first of equal ones), by comparing
// every pattern at every offset, without regard to ASCII case.
func naiveLongest(patterns [][]byte, text []byte) (lens, pats []int) {
	text = asciiLower(text)
	lens, pats = make([]int, len(text)), make([]int, len(text))
	for e := range text {
		pats[e] = -1
		for i, p := range patterns {
			if len(p) > 0 && len(p) > lens[e] && bytes.HasSuffix(text[:e+1], asciiLower(p)) {
				lens[e], pats[e] = len(p), i
			}
		}
	}
	return lens, pats
}

// naiveScrub applies the scrubber's documented rule without streaming:
// every match found by strings.Index at every offset marks its bytes; each
// maximal run of marked bytes built from overlapping matches is replaced
// once, by the match that starts first (the longest there). ASCII case is
// ignored.
func naiveScrub(patterns []scrubPattern, text []byte) []byte {
	lower := asciiLower(text)
	type span struct{ s, e, p int }
	var spans []span
	for i, p := range patterns {
		if len(p.find) < minScrubLen {
			continue
		}
		for from := 0; from <= len(text); {
			j := strings.Index(string(lower[from:]), string(asciiLower(p.find)))
			if j < 0 {
				break
			}
			spans = append(spans, span{from + j, from + j + len(p.find), i})
			from += j + 1
		}
	}
	var out []byte
	i := 0
	for i < len(text) {
		// The match starting first at or after i, longest at that start,
		// first pattern among equals.
		best := span{-1, -1, -1}
		for _, sp := range spans {
			if sp.s < i {
				continue
			}
			if best.p < 0 || sp.s < best.s || sp.s == best.s && (sp.e > best.e || sp.e == best.e && sp.p < best.p) {
				best = sp
			}
		}
		if best.p < 0 {
			break
		}
		// Extend over every match overlapping the run.
		end := best.e
		for grew := true; grew; {
			grew = false
			for _, sp := range spans {
				if sp.s >= best.s && sp.s < end && sp.e > end {
					end, grew = sp.e, true
				}
			}
		}
		out = append(out, text[i:best.s]...)
		out = append(out, patterns[best.p].replace...)
		i = end
	}
	return append(out, text[i:]...)
}

func streamScrub(s *scrubber, text []byte, chunk func() int) []byte {
	sc := scrubScan{s: s}
	var out []byte
	for len(text) > 0 {
		n := min(max(chunk(), 1), len(text))
		out = sc.write(out, text[:n])
		text = text[n:]
	}
	return sc.close(out)
}

func checkScrub(t *testing.T, pats []scrubPattern, text []byte, seed uint64) {
	t.Helper()
	var finds [][]byte
	for _, p := range pats {
		finds = append(finds, p.find)
	}
	m := newMatcher(pats)
	wantLen, wantPat := naiveLongest(finds, text)
	st := int32(0)
	for e, c := range text {
		st = m.step(st, c)
		if int(m.outLen[st]) != wantLen[e] || wantLen[e] > 0 && !bytes.EqualFold(finds[m.outPat[st]], finds[wantPat[e]]) {
			t.Fatalf("offset %d: matcher says %d (pattern %d), reference %d (pattern %d)", e, m.outLen[st], m.outPat[st], wantLen[e], wantPat[e])
		}
	}
	anyMatch := false
	for _, l := range wantLen {
		anyMatch = anyMatch || l > 0
	}
	if got := matchesIn(m, text); got != anyMatch {
		t.Fatalf("patterns %q text %q: matchesIn %v, reference %v", finds, text, got, anyMatch)
	}
	if got := matchesIn(m, string(text)); got != anyMatch {
		t.Fatalf("patterns %q text %q: matchesIn(string) %v, reference %v", finds, text, got, anyMatch)
	}
	s := newScrubber(pats)
	if s == nil {
		return
	}
	want := naiveScrub(s.patterns, text)
	r := rand.New(rand.NewPCG(seed, 7))
	for _, chunk := range []func() int{func() int { return len(text) }, func() int { return 1 }, func() int { return r.IntN(17) }} {
		if got := streamScrub(s, text, chunk); !bytes.Equal(got, want) {
			t.Fatalf("patterns %q text %q:\n got  %q\n want %q", finds, text, got, want)
		}
	}
}

func TestScrubberMatchesReference(t *testing.T) {
	cases := []struct {
		pats []string
		text string
	}{
		{[]string{"secret"}, "a secret and secretsecret"},
		{[]string{"abcdef", "abcdefgh"}, "xxabcdefghxxabcdefxx"},
		{[]string{"bcdefg", "abcdefghij"}, "abcdefghij bcdefg"},
		{[]string{"aaaaaa"}, strings.Repeat("a", 20)},
		{[]string{"abcdef", "defghi"}, "abcdefghi"},
		{[]string{"abcabc", "bcabca"}, "abcabcabcabca"},
		{[]string{"pppppppA1", "pppppppB2", "pppppppC3"}, strings.Repeat("pppppppA1 ppppppp", 5)},
		{[]string{"aaaaaa", strings.Repeat("a", 40) + "b"}, strings.Repeat("a", 100)},
		// Case is ignored: upper-cased echoes, lower-case hex escapes.
		{[]string{"Secret"}, "a SECRET and secret and sEcReT"},
		{[]string{"a%2Fb%2Fc", "a/b/c/d"}, "a%2fb%2fc and A/B/C/D"},
	}
	for i, c := range cases {
		var pats []scrubPattern
		for j, p := range c.pats {
			pats = append(pats, scrubPattern{[]byte(p), []byte(fmt.Sprintf("<%d>", j))})
		}
		checkScrub(t, pats, []byte(c.text), uint64(i))
	}
}

// TestScrubberRandom compares the streaming scrubber with the reference on
// random texts over a small alphabet, where overlaps are frequent.
func TestScrubberRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	word := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = "abcAB"[r.IntN(5)]
		}
		return b
	}
	for i := range 300 {
		var pats []scrubPattern
		for j := range 1 + r.IntN(5) {
			pats = append(pats, scrubPattern{word(4 + r.IntN(6)), []byte(fmt.Sprintf("<%d>", j))})
		}
		checkScrub(t, pats, word(r.IntN(200)), uint64(i))
	}
}

// TestScrubberSparse is TestScrubberRandom over every byte value, with
// the patterns planted in the text now and then: most positions start no
// pattern, so the scan skips them (the pair filter, skipStart), and what
// it finds must still be what the reference finds, at every chunking.
func TestScrubberSparse(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	word := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.IntN(256))
			if r.IntN(3) == 0 {
				b[i] = "aAbB%z"[r.IntN(6)]
			}
		}
		return b
	}
	for i := range 1000 {
		var pats []scrubPattern
		for j := range 1 + r.IntN(6) {
			pats = append(pats, scrubPattern{word(1 + r.IntN(8)), []byte(fmt.Sprintf("<%d>", j))})
		}
		text := word(r.IntN(300))
		for range r.IntN(4) {
			at := r.IntN(len(text) + 1)
			p := bytes.Clone(pats[r.IntN(len(pats))].find)
			if r.IntN(2) == 0 {
				p = bytes.ToUpper(p)
			}
			text = append(text[:at:at], append(p, text[at:]...)...)
		}
		checkScrub(t, pats, text, uint64(i))
	}
}

func FuzzScrubber(f *testing.F) {
	f.Add([]byte("abcdef"), []byte("abcdefgh"), []byte("xxabcdefghxx abcdef"), uint64(1))
	f.Add([]byte("aaaaaa"), []byte("aaaaaaaab"), bytes.Repeat([]byte("a"), 50), uint64(2))
	f.Add([]byte("ppppA1"), []byte("ppppB2"), []byte("ppppA1ppppB2pppp"), uint64(3))
	f.Fuzz(func(t *testing.T, p1, p2, text []byte, seed uint64) {
		if len(text) > 4096 || len(p1) > 64 || len(p2) > 64 {
			return
		}
		checkScrub(t, []scrubPattern{{p1, []byte("<1>")}, {p2, []byte("<2>")}}, text, seed)
	})
}

// BenchmarkScrub: ns/byte over 1 KiB to 8 MiB with 1 and 100 secrets,
// including the adversarial case of the issue (patterns sharing a long
// prefix, the body echoing one of them back to back). Flat columns are
// the claim: run with
//
//	go test -run '^$' -bench BenchmarkScrub -benchtime 300ms ./proxy/
func BenchmarkScrub(b *testing.B) {
	for _, secrets := range []int{1, 100} {
		for _, shape := range []string{"text", "adversarial"} {
			var pats []scrubPattern
			prefix := strings.Repeat("p", 100)
			for i := range secrets {
				v := fmt.Sprintf("tok_live_%08x_value", i)
				if shape == "adversarial" {
					v = fmt.Sprintf("%s%08x", prefix, i)
				}
				pats = append(pats, scrubPattern{[]byte(v), []byte(canonicalRef(fmt.Sprintf("S%d", i)))})
			}
			s := newScrubber(pats)
			for _, size := range []int{1 << 10, 64 << 10, 1 << 20, 8 << 20} {
				var body []byte
				for len(body) < size {
					if shape == "adversarial" {
						body = append(body, pats[0].find...)
						body = append(body, prefix[:99]...)
					} else {
						body = append(body, "lorem ipsum dolor sit amet, consectetur adipiscing elit "...)
						if len(body)%4096 < 64 {
							body = append(body, pats[len(body)%len(pats)].find...)
						}
					}
				}
				body = body[:size]
				b.Run(fmt.Sprintf("secrets=%d/%s/size=%d", secrets, shape, size), func(b *testing.B) {
					b.SetBytes(int64(size))
					cpu0 := proccpu.Self()
					for b.Loop() {
						r := newScrubReader(io.NopCloser(bytes.NewReader(body)), s, nil)
						if _, err := io.Copy(io.Discard, r); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(size), "ns/byte")
					b.ReportMetric(float64(proccpu.Self()-cpu0)/float64(b.N)/float64(size), "cpu-ns/byte")
				})
			}
		}
	}
}

// TestBase64Core: the core of v at an alignment is in the base64 of any
// text holding v at that offset (mod 3), whatever surrounds it, and holds
// every character that depends on v alone.
func TestBase64Core(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		v := make([]byte, 1+r.IntN(20))
		pre := make([]byte, r.IntN(7))
		suf := make([]byte, r.IntN(4))
		for _, b := range [][]byte{v, pre, suf} {
			for i := range b {
				b[i] = byte(r.IntN(256))
			}
		}
		text := append(append(append([]byte{}, pre...), v...), suf...)
		for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
			core := appendBase64Core(nil, v, len(pre)%3, enc)
			if !strings.Contains(enc.EncodeToString(text), string(core)) {
				t.Fatalf("core %q of %x (align %d) not in %q", core, v, len(pre)%3, enc.EncodeToString(text))
			}
			// Only v's bytes fully determine len(v)*8 bits minus what the
			// edge characters share: the core is at most one character
			// short of that on each edge.
			if want := len(v) * 8 / 6; len(core) < want-2 {
				t.Fatalf("core %q of %d bytes is short", core, len(v))
			}
		}
	}
}

// BenchmarkScrubResponse is scrubResponse on the small answer proxyload's
// upstream gives (three headers, "ok"), which holds no plaintext, with the
// cached scrubber of the load's two secrets (TOKEN and USER, every form).
func BenchmarkScrubResponse(b *testing.B) {
	forms := append(valueForms("TOKEN", []byte("tok_live_5f3a9c2e7d1b4a60")), valueForms("USER", []byte("acct-0042"))...)
	sc := newScrubber(forms)
	st := &reqState{}
	h := http.Header{"Date": {"Mon, 30 Nov 2026 04:46:04 GMT"}, "Content-Length": {"2"}, "Content-Type": {"text/plain; charset=utf-8"}}
	var rd strings.Reader
	body := io.NopCloser(&rd)
	b.ReportAllocs()
	cpu0 := proccpu.Self()
	for b.Loop() {
		rd.Reset("ok")
		resp := &http.Response{StatusCode: 200, Status: "200 OK", Header: h, Body: body, ContentLength: 2}
		if n := st.scrubResponse(resp, sc); n != 0 {
			b.Fatal(n)
		}
	}
	b.ReportMetric(float64(proccpu.Self()-cpu0)/float64(b.N), "cpu-ns/op")
}
