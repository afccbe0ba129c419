package proxy

import (
	"errors"
	"strings"
	"testing"
)

func TestRedactQuoted(t *testing.T) {
	for in, want := range map[string]string{
		`malformed HTTP status code "tok_live_5f3a9c2e"`: `malformed HTTP status code "…"`,
		`a "x\"y" b "z" c`: `a "…" b "…" c`,
		`no quotes`:        `no quotes`,
		`cut "abc`:         `cut "…"`,
		``:                 ``,
	} {
		if got := redactQuoted(in); got != want {
			t.Errorf("redactQuoted(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzRedactQuoted: never a panic, and quotes stay paired (every quoted
// stretch became "…").
func FuzzRedactQuoted(f *testing.F) {
	f.Add(`x "a\"b" y`)
	f.Add(`"`)
	f.Add(`"\x`)
	f.Fuzz(func(t *testing.T, s string) {
		out := redactQuoted(s)
		if strings.Count(out, `"`)%2 != 0 {
			t.Fatalf("%q -> %q: an odd quote", s, out)
		}
	})
}

func TestWithheldKeepsClass(t *testing.T) {
	st := &reqState{}
	st.resolved = append(st.resolved, resolvedSecret{name: "T"})
	err := st.withheld(errorsJoin(errUpstream, `bad "secret"`))
	if !errors.Is(err, errUpstream) || strings.Contains(err.Error(), "secret") {
		t.Fatalf("%v", err)
	}
}

func errorsJoin(base error, msg string) error { return &withheldError{msg: msg, err: base} }
