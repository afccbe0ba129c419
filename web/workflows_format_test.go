package web

import (
	"html"
	"strings"
	"testing"
)

// TestMarkRefs: references and expressions are wrapped, everything is
// escaped, near-misses stay plain text.
func TestMarkRefs(t *testing.T) {
	for in, want := range map[string]string{
		"Bearer ${{ secrets.TOKEN }}":         `Bearer <span class="ref">${{ secrets.TOKEN }}</span>`,
		"$<< secrets.TOKEN >>&x=<b>":          `<span class="ref">$&lt;&lt; secrets.TOKEN &gt;&gt;</span>&amp;x=&lt;b&gt;`,
		"/u/${{ input.id }}":                  `/u/<span class="expr">${{ input.id }}</span>`,
		"${{ secret.TOKEN }}":                 `<span class="expr">${{ secret.TOKEN }}</span>`,
		"${HOME} and ${{ unterminated":        `${HOME} and ${{ unterminated`,
		`"><script>alert(1)</script>${{ x }}`: `&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;<span class="expr">${{ x }}</span>`,
	} {
		if got := string(markRefs(in)); got != want {
			t.Errorf("markRefs(%q)\n got %s\nwant %s", in, got, want)
		}
	}
}

func TestUnescapeHTMLJSON(t *testing.T) {
	for in, want := range map[string]string{
		`"\u003c\u003c x \u003e\u003e"`: `"<< x >>"`,
		`"a \u0026 b"`:                  `"a & b"`,
		`"\\u003c stays"`:               `"\\u003c stays"`,
		`"\u00e9 stays"`:                `"\u00e9 stays"`,
		`"trailing \`:                   `"trailing \`,
		`"\u003`:                        `"\u003`,
	} {
		if got := unescapeHTMLJSON(in); got != want {
			t.Errorf("unescapeHTMLJSON(%s) = %s, want %s", in, got, want)
		}
	}
}

// FuzzMarkRefs: whatever the template, the markup is only our spans around
// escaped text, and taking the spans out and unescaping gives the input
// back (nothing added, nothing lost, nothing unescaped).
func FuzzMarkRefs(f *testing.F) {
	for _, s := range []string{"Bearer ${{ secrets.A }}", "$<< secrets.B >>", "<a href=x>${{ input.x }}</a>", "${{", "}}${{ }}", "&amp;"} {
		f.Add(s)
	}
	strip := strings.NewReplacer(`<span class="ref">`, "", `<span class="expr">`, "", `</span>`, "")
	f.Fuzz(func(t *testing.T, s string) {
		out := string(markRefs(s))
		bare := strip.Replace(out)
		if strings.ContainsAny(bare, "<>\"'") {
			t.Fatalf("markRefs(%q) left markup outside its spans: %s", s, out)
		}
		// (HTML escaping turns NUL into U+FFFD, as browsers would.)
		if html.UnescapeString(bare) != strings.ReplaceAll(s, "\x00", "\uFFFD") {
			t.Fatalf("markRefs(%q) changed the text: %s", s, out)
		}
		u := unescapeHTMLJSON(s)
		if len(u) > len(s) {
			t.Fatalf("unescapeHTMLJSON(%q) grew: %q", s, u)
		}
	})
}
