package leakcheck

import (
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"
)

// TestFormsFindEncodedValues: the scanner really finds the value when it is
// embedded in each encoding, so a passing leak scan means something.
func TestFormsFindEncodedValues(t *testing.T) {
	const v = "canary/Q+w=&ü-0123456789abcdef"
	embeds := []string{
		"x" + v + "y",
		"token=" + url.QueryEscape(v),
		"/p/" + url.PathEscape(v),
		hex.EncodeToString([]byte("pre" + v + "post")),
		base64.StdEncoding.EncodeToString([]byte("a" + v)),
		base64.StdEncoding.EncodeToString([]byte("ab" + v + "z")),
		base64.URLEncoding.EncodeToString([]byte("abc" + v)),
		base64.RawStdEncoding.EncodeToString([]byte(v)),
	}
	forms := Forms(v)
	for _, e := range embeds {
		found := false
		for _, needle := range forms {
			if strings.Contains(e, needle) {
				found = true
			}
		}
		if !found {
			t.Errorf("no form of the value found in %q", e)
		}
	}
	for _, clean := range []string{"", "canary", base64.StdEncoding.EncodeToString([]byte("something else entirely, long enough"))} {
		for form, needle := range forms {
			if strings.Contains(clean, needle) {
				t.Errorf("false positive: %s form in %q", form, clean)
			}
		}
	}
}
