package template

import (
	"bytes"
	"math/rand/v2"
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
