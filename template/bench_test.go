package template

import "testing"

func BenchmarkRewriteHeader(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := RewriteString("Bearer ${{ secrets.TOKEN }}", ContextHeader, resolveTest); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRewriteQuery(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := RewriteString("token=%24%7B%7B+secrets.TOKEN+%7D%7D&x=1", ContextQuery, resolveTest); err != nil {
			b.Fatal(err)
		}
	}
}
