package template_test

import (
	"fmt"

	"rotor.sh/rotor/template"
)

// The same value lands differently depending on where the reference is.
func ExampleRewriteString() {
	resolve := func(name string) ([]byte, error) { return []byte(`p&ss "w/rd"`), nil }
	for _, c := range []struct {
		ctx template.Context
		in  string
	}{
		{template.ContextQuery, "token=%24%7B%7B+secrets.API_KEY+%7D%7D&x=1"},
		{template.ContextPath, "/v1/${{%20secrets.API_KEY%20}}/notify"},
		{template.ContextJSON, `{"key":"${{ secrets.API_KEY }}"}`},
		{template.ContextHeader, "Bearer $<< secrets.API_KEY >>"},
		{template.ContextRaw, "${{ env.HOME }} stays as it is"},
	} {
		out, _, err := template.RewriteString(c.in, c.ctx, resolve)
		fmt.Println(out, err)
	}
	// Output:
	// token=p%26ss+%22w%2Frd%22&x=1 <nil>
	// /v1/p&ss%20%22w%2Frd%22/notify <nil>
	// {"key":"p\u0026ss \"w/rd\""} <nil>
	// Bearer p&ss "w/rd" <nil>
	// ${{ env.HOME }} stays as it is <nil>
}
