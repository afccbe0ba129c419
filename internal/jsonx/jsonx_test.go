package jsonx

import (
	"encoding/json"
	"testing"
	"time"
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
