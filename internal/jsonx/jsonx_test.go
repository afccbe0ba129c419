package jsonx

import (
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"
)

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "a\"b\\c", "\x00\x1f\x7f", "<>&", "\u2028\u2029", "\xff\xfe", "ключ🔑"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := AppendString(nil, s)
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("invalid JSON %q: %v", out, err)
		}
		want, _ := json.Marshal(s)
		var wantBack string
		json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Fatalf("decoded %q, encoding/json round-trips to %q", back, wantBack)
		}
	})
}

func TestObject(t *testing.T) {
	var o Object
	o.Str("host", "a\"b").Int("version", 3).Time("at", time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)).Raw("in", []byte(`{"x":1}`)).Raw("skip", nil)
	var m map[string]any
	if err := json.Unmarshal(o.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m["host"] != "a\"b" || m["version"] != 3.0 || m["at"] != "2026-01-02T03:04:05.000000006Z" || m["in"].(map[string]any)["x"] != 1.0 || len(m) != 4 {
		t.Fatalf("%s", o.Bytes())
	}
	var empty Object
	if string(empty.Bytes()) != "{}" {
		t.Fatal("empty object")
	}
}

// FuzzAppendContentSame: the run-copying encoder writes exactly the bytes
// of the byte-at-a-time one it replaced (refAppendStringContent), from a
// string and from a byte slice.
func FuzzAppendContentSame(f *testing.F) {
	for _, s := range []string{"", "plain.example.com", "a\"b\\c", "\x00\x1f\x7f", "<>&", "x\u2028y\u2029", "\xff\xfe", "ключ🔑", "ab\xe2\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := refAppendStringContent([]byte("pre"), []byte(s))
		if got := AppendStringContent([]byte("pre"), []byte(s)); string(got) != string(want) {
			t.Fatalf("bytes %q: got %q, want %q", s, got, want)
		}
		if got := AppendString([]byte("pre"), s); string(got) != "pre\""+string(want[3:])+"\"" {
			t.Fatalf("string %q: got %q, want %q", s, got, want)
		}
	})
}

// refAppendStringContent is the encoder before run copying, for
// FuzzAppendContentSame.
func refAppendStringContent(dst []byte, s []byte) []byte {
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			switch {
			case b == '"' || b == '\\':
				dst = append(dst, '\\', b)
			case b == '\n':
				dst = append(dst, '\\', 'n')
			case b == '\r':
				dst = append(dst, '\\', 'r')
			case b == '\t':
				dst = append(dst, '\\', 't')
			case b < 0x20 || b == 0x7f || b == '<' || b == '>' || b == '&':
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			default:
				dst = append(dst, b)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return dst
}
