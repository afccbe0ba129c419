package template

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestAppendRewriteStringMatchesRewriteString: appending into a shared
// buffer gives exactly what RewriteString returns (text, reference count,
// failure), leaves the bytes already in the buffer alone, and appends
// nothing when nothing could start a reference.
func TestAppendRewriteStringMatchesRewriteString(t *testing.T) {
	rnd := rand.New(rand.NewPCG(15, 3))
	prefix := []byte("held:")
	for iter := range 2000 {
		s := string(randomBody(rnd))
		if len(s) > 4<<10 {
			s = s[:4<<10]
		}
		c := Context(rnd.IntN(len(contextNames)))
		want, wantN, wantErr := RewriteString(s, c, resolveTest)
		dst := append(make([]byte, 0, len(prefix)+rnd.IntN(64)), prefix...)
		out, n, err := AppendRewriteString(dst, s, c, resolveTest)
		if !bytes.Equal(out[:len(prefix)], prefix) || !bytes.Equal(dst, prefix) {
			t.Fatalf("iter %d: the buffer's own bytes changed", iter)
		}
		if (err == nil) != (wantErr == nil) || n != wantN {
			t.Fatalf("iter %d (%s): append n=%d err %v, RewriteString n=%d err %v", iter, c, n, err, wantN, wantErr)
		}
		if err != nil {
			if len(out) != len(prefix) {
				t.Fatalf("iter %d: a failed rewrite grew the buffer", iter)
			}
			continue
		}
		got := string(out[len(prefix):])
		percent, _ := c.decodes()
		if !containsCandidate(s, percent) {
			if len(out) != len(prefix) {
				t.Fatalf("iter %d: appended %q with nothing to rewrite", iter, got)
			}
			got = s
		}
		if got != want {
			t.Fatalf("iter %d (%s): append %.80q, RewriteString %.80q", iter, c, got, want)
		}
	}
}

// TestNamesInterned: a name matched before is not copied again (the
// rewrite of a string into a buffer with room allocates nothing), and a
// name that is not valid is refused every time, never served from the
// table.
func TestNamesInterned(t *testing.T) {
	v := []byte("tok")
	resolve := func(string) ([]byte, error) { return v, nil }
	dst := make([]byte, 0, 256)
	for _, s := range []string{"Bearer ${{ secrets.TOKEN }}", "token=%24%7B%7B+secrets.TOKEN+%7D%7D"} {
		c := ContextHeader
		if s[0] == 't' {
			c = ContextQuery
		}
		if _, _, err := AppendRewriteString(dst, s, c, resolve); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() {
			if _, _, err := AppendRewriteString(dst, s, c, resolve); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%q: %v allocations per rewrite of a known name, want 0", s, n)
		}
	}
	for range 3 {
		if _, _, err := RewriteString("${{ secrets.lower }}", ContextHeader, resolve); err == nil {
			t.Fatal("an invalid name resolved")
		}
	}
}

// TestSpellingsLikeReading: matchRef with the spelled openings gives what
// reading every character gives (kind, end, name, error), for references
// in every spelling and context, cut short (more to come, or at EOF) at
// every length.
func TestSpellingsLikeReading(t *testing.T) {
	rnd := rand.New(rand.NewPCG(15, 4))
	ins := []string{
		"${{ secrets.TOKEN }}", "$%7B%7B%20secrets.USER%20%7D%7D", "%24%7B%7B+secrets.TOKEN+%7D%7D",
		"%24%7B%7B%20secrets.A%20%7D%7D", "${{secrets.A}}", "$<< secrets.A >>", "$<< secrets.A }}",
		"${{ secrets.A >>", "${{ secrets.lower }}", "${{ secrets. }}", "%24%7B%7B+secrets.A%20%7d%7d",
		"${{ secrets.A", "$%7B%7B+secrets.A+%7D%7D", "${{ secrets.TOK%45N }}", "%24%7B%7B+secrets.TOK%45N+%7D%7D",
		"${{ secrets.A+}}", "${{ secrets.A  }}", "${{ secrets.A }}}", "$<< secrets.A >>>", "${{ secrets.A%20}}",
		"${{ secrets." + strings.Repeat("N", 128) + " }}", "${{ secrets." + strings.Repeat("N", 129) + " }}",
		"${{ secrets.9A }}", "$<< secrets.A }}", "$%7B%7B%20secrets.A+%7D%7D",
	}
	for range 300 {
		ins = append(ins, string(randomBody(rnd)))
	}
	defer func() { useSpellings = true }()
	for _, in := range ins {
		b := []byte(in)
		for cut := 0; cut <= len(b) && cut < 200; cut++ {
			for start := 0; start < cut; start++ {
				if b[start] != '$' && b[start] != '%' {
					continue
				}
				for _, flags := range [][3]bool{{false, false, false}, {true, false, false}, {true, true, false}, {false, false, true}, {true, false, true}, {true, true, true}} {
					useSpellings = true
					k1, e1, n1, err1 := matchRef(b[:cut], start, flags[0], flags[1], flags[2])
					useSpellings = false
					k2, e2, n2, err2 := matchRef(b[:cut], start, flags[0], flags[1], flags[2])
					if k1 != k2 || e1 != e2 || n1 != n2 || (err1 == nil) != (err2 == nil) || err1 != nil && err1.Error() != err2.Error() {
						t.Fatalf("%q[%d:%d] %v: spelled %v %d %q %v, read %v %d %q %v", in, start, cut, flags, k1, e1, n1, err1, k2, e2, n2, err2)
					}
				}
			}
		}
	}
}
