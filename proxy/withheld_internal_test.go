package proxy

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"rotor.sh/rotor/vault"
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

// TestWithheldScrubsEncodedForms: an upstream error that echoes a resolved
// value unquoted, in clear or encoded, shows none of those forms.
func TestWithheldScrubsEncodedForms(t *testing.T) {
	const v = "tok_live_5f3a9c2e77d1"
	st := &reqState{}
	st.resolved = append(st.resolved, resolvedSecret{name: "T", value: vault.PlaintextString(v)})
	b64 := base64.StdEncoding.EncodeToString([]byte(v))
	err := st.withheld(errorsJoin(errUpstream, "bad "+v+" then "+b64+" end"))
	if !errors.Is(err, errUpstream) {
		t.Fatalf("class lost: %v", err)
	}
	for _, form := range []string{v, b64} {
		if strings.Contains(err.Error(), form) {
			t.Fatalf("%q shows %q", err.Error(), form)
		}
	}
	if !strings.Contains(err.Error(), "bad ") || !strings.Contains(err.Error(), " end") {
		t.Fatalf("the rest of the message was lost: %q", err.Error())
	}
}
