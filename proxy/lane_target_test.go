package proxy

import (
	"net/url"
	"reflect"
	"testing"
)

var parseTargetSeeds = []string{
	"/hooks/$%7B%7B%20secrets.USER%20%7D%7D?token=%24%7B%7B+secrets.TOKEN+%7D%7D",
	"http://127.0.0.1:8080/hooks/$%7B%7B%20secrets.USER%20%7D%7D?token=%24%7B%7B+secrets.TOKEN+%7D%7D",
	"/", "/?", "/x?", "/x??", "/x?a?", "/?a", "//host/p", "/a%2Fb", "/a%2fb", "/a%3fb", "/$%7b%7b", "/%", "/%2", "/%zz", "/%25",
	"/a+b", "/a b", "/é", "/*", "/a?b#c", "/a#b", "/a%3Fb?c", "/~!$&'()*+,;=:@",
	"http://host", "http://host?q", "http://host/", "http://host:", "http://:80/", "http://h:8:9/",
	"http://h:x/", "http://u@h/", "http://[::1]:80/", "http://h%41/", "http://H.Ex-a_mple/", "http:///p",
	"http://h/%7e", "http://h/a?%zz", "HTTP://h/", "http:/h",
}

// checkParseTargetFast fails t when parseTargetFast returns a URL that is
// not exactly ParseRequestURI's, or one where ParseRequestURI fails.
func checkParseTargetFast(t *testing.T, target string) {
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c >= 0x7f {
			return // the lane hands these over before parsing
		}
	}
	for _, abs := range []bool{false, true} {
		got, ok := parseTargetFast(target, abs)
		if !ok {
			continue
		}
		want, err := url.ParseRequestURI(target)
		if err != nil {
			t.Fatalf("parseTargetFast(%q, %v) = %#v, ParseRequestURI fails: %v", target, abs, got, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("parseTargetFast(%q, %v) = %#v, ParseRequestURI %#v", target, abs, got, want)
		}
	}
}

// TestParseTargetFastLikeNetURL: the lane's parse of the usual targets is
// ParseRequestURI's, field for field, or left to it.
func TestParseTargetFastLikeNetURL(t *testing.T) {
	for _, s := range parseTargetSeeds {
		checkParseTargetFast(t, s)
	}
	for _, s := range []string{parseTargetSeeds[0], parseTargetSeeds[1], "/plain/path?x=1", "http://h:1/"} {
		abs := s[0] == 'h'
		if _, ok := parseTargetFast(s, abs); !ok {
			t.Errorf("parseTargetFast(%q) left the usual target to ParseRequestURI", s)
		}
	}
}

func FuzzParseTargetFast(f *testing.F) {
	for _, s := range parseTargetSeeds {
		f.Add(s)
	}
	f.Fuzz(checkParseTargetFast)
}
