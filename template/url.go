package template

import "strings"

// URLShape is a template URL with every secret reference replaced by "x",
// so that url.Parse can check its shape before any value is known.
// It is empty when a reference is malformed (References says why).
func URLShape(raw string) string {
	shape, _, _ := RewriteString(raw, ContextQuery, func(string) ([]byte, error) { return []byte("x"), nil })
	return shape
}

// HostPart is the authority of a raw template URL (between "//" and the
// path, after any userinfo): where a reference would choose the
// destination, which every surface refuses.
func HostPart(raw string) string {
	_, rest, ok := strings.Cut(raw, "//")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	if _, h, ok := strings.Cut(rest, "@"); ok {
		rest = h
	}
	return rest
}
