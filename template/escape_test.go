package template

import (
	"math/rand/v2"
	"net/url"
	"testing"
)

// TestEscapeLikeNetURL: the allocation-free escapers produce exactly what
// net/url does, for every byte and for random strings (the scrubber looks
// for the value in these forms, so a difference would let an echo through).
func TestEscapeLikeNetURL(t *testing.T) {
	check := func(v []byte) {
		t.Helper()
		if got, want := string(AppendQueryEscape(nil, v)), url.QueryEscape(string(v)); got != want {
			t.Fatalf("query %q: %q, want %q", v, got, want)
		}
		if got, want := string(AppendPathEscape(nil, v)), url.PathEscape(string(v)); got != want {
			t.Fatalf("path %q: %q, want %q", v, got, want)
		}
	}
	for c := range 256 {
		check([]byte{byte(c)})
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		v := make([]byte, r.IntN(40))
		for i := range v {
			v[i] = byte(r.IntN(256))
		}
		check(v)
	}
}

func FuzzEscapeLikeNetURL(f *testing.F) {
	f.Add([]byte("a b/c?d;e,f$g&h+i:j=k@l~m"))
	f.Fuzz(func(t *testing.T, v []byte) {
		if got, want := string(AppendQueryEscape(nil, v)), url.QueryEscape(string(v)); got != want {
			t.Fatalf("query %q: %q, want %q", v, got, want)
		}
		if got, want := string(AppendPathEscape(nil, v)), url.PathEscape(string(v)); got != want {
			t.Fatalf("path %q: %q, want %q", v, got, want)
		}
	})
}
