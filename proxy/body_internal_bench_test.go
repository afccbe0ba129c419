package proxy

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkRewriteBody1KiB is the request body path alone (rewriteBody,
// then the transport's Close; the request state reused) for a 1 KiB JSON
// body: "plain" has nothing
// that could start a reference, "resolved" two references.
func BenchmarkRewriteBody1KiB(b *testing.B) {
	ve, p := benchProxy(b, "TOKEN", "tok_live_5f3a9c2e7d1b4a60", "USER", "acct-0042")
	body := func(user, tok string) []byte {
		s := `{"account":"` + user + `","token":"` + tok + `","pad":"`
		return []byte(s + strings.Repeat("x", 1<<10-2-len(s)) + `"}`)
	}
	for _, c := range []struct {
		name string
		body []byte
	}{
		{"plain", body("acct-0042", "tok_live_5f3a9c2e7d1b4a60")},
		{"resolved", body("${{ secrets.USER }}", "${{ secrets.TOKEN }}")},
	} {
		b.Run(c.name, func(b *testing.B) {
			rd := bytes.NewReader(nil)
			out := httptest.NewRequest("POST", "http://upstream.test/", nil)
			out.Header.Set("Content-Type", "application/json")
			st := new(reqState)
			b.ReportAllocs()
			for b.Loop() {
				*st = reqState{p: p, ctx: context.Background(), id: "prx_bench", actor: ve.Operator, host: "upstream.test", scheme: "http"}
				st.rf = st.resolveName
				rd.Reset(c.body)
				out.Body, out.ContentLength = readCloser{rd}, int64(len(c.body))
				if err := st.rewriteBody(out); err != nil {
					b.Fatal(err)
				}
				_ = out.Body.Close()
			}
		})
	}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }
