package template

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// TestNearMissesRefused: text that is almost a reference (wrong prefix,
// wrong case, missing or extra brackets, a space after '$') must fail closed
// rather than reach the upstream as template text. Encoded forms count too.
func TestNearMissesRefused(t *testing.T) {
	cases := []struct {
		ctx Context
		in  string
	}{
		{ContextRaw, "${{ secret.NOTIFY_TOKEN }}"},
		{ContextRaw, "${{secret.A}}"},
		{ContextRaw, "${{ Secrets.A }}"},
		{ContextRaw, "${{ SECRETS.A }}"},
		{ContextRaw, "${{ Secret.A }}"},
		{ContextRaw, "$<< secret.A >>"},
		{ContextRaw, "$<< Secrets.A >>"},
		{ContextRaw, "${ secrets.A }"},
		{ContextRaw, "${secrets.A}"},
		{ContextRaw, "${{{ secrets.A }}}"},
		{ContextRaw, "$< secrets.A >"},
		{ContextRaw, "$<<< secrets.A >>>"},
		{ContextRaw, "$ {{ secrets.A }}"},
		{ContextRaw, "x ${{ secrets.A }} then ${{ secret.A }}"},
		{ContextHeader, "Bearer ${{ secret.TOKEN }}"},
		{ContextJSON, `{"k":"${{ secret.TOKEN }}"}`},
		{ContextQuery, "token=%24%7B%7B+secret.TOKEN+%7D%7D"},
		{ContextQuery, "token=${{%20Secrets.TOKEN%20}}"},
		{ContextForm, "t=%24%7B%7B+SECRETS.TOKEN+%7D%7D"},
		{ContextPath, "/v1/%24%7Bsecrets.A%7D"},
	}
	for _, c := range cases {
		_, _, err := RewriteString(c.in, c.ctx, resolveTest)
		if !errors.Is(err, ErrReference) {
			t.Errorf("%s %q: err = %v, want ErrReference", c.ctx, c.in, err)
			continue
		}
		if _, err := References(c.in, c.ctx); !errors.Is(err, ErrReference) {
			t.Errorf("%s %q: References err = %v", c.ctx, c.in, err)
		}
		// Streamed one byte at a time, the decision waits for the prefix.
		_, err = io.ReadAll(NewRewriter(iotest.OneByteReader(strings.NewReader(c.in)), c.ctx, resolveTest))
		if !errors.Is(err, ErrReference) {
			t.Errorf("%s %q streamed: err = %v", c.ctx, c.in, err)
		}
	}
}

// TestLookAlikesPass: text that resembles the syntax without naming secrets
// is not a reference and passes byte for byte.
func TestLookAlikesPass(t *testing.T) {
	cases := []struct {
		ctx Context
		in  string
	}{
		{ContextRaw, "${{ env.X }}"},
		{ContextRaw, "${{ inputs.secret }}"},
		{ContextRaw, "${{ github.event.secrets }}"},
		{ContextRaw, "echo ${HOME} ${PATH:-/bin} $HOME"},
		{ContextRaw, "cat <<EOF\n$<<EOF\nx\nEOF"},
		{ContextRaw, "$<<x"},
		{ContextRaw, "$$ $5 ${{"},
		{ContextRaw, "${{ secretsXA }}"},
		{ContextRaw, "${{ secrets }}"},
		{ContextRaw, "${{ secretive.A }}"},
		{ContextRaw, "{{ .Values.secret }}"},
		{ContextRaw, "price: $5, ${ total }"},
		{ContextJSON, `{"price":"$5","k":"${{ env.X }}","s":"${HOME}"}`},
		{ContextQuery, "q=%24%7BHOME%7D&r=%ZZ"},
		{ContextHeader, "Bearer ${TOKEN}"},
	}
	for _, c := range cases {
		got, n, err := RewriteString(c.in, c.ctx, resolveTest)
		if err != nil || got != c.in || n != 0 {
			t.Errorf("%s %q: got %q, %d refs, %v", c.ctx, c.in, got, n, err)
		}
		out, err := io.ReadAll(NewRewriter(iotest.OneByteReader(strings.NewReader(c.in)), c.ctx, resolveTest))
		if err != nil || string(out) != c.in {
			t.Errorf("%s %q streamed: got %q, %v", c.ctx, c.in, out, err)
		}
	}
	// A near-miss error names what it saw, never text after the prefix.
	_, _, err := RewriteString("${{ secret.A }} tail-value", ContextRaw, resolveTest)
	if err == nil || strings.Contains(err.Error(), "tail-value") || !strings.Contains(err.Error(), "secrets.") {
		t.Fatalf("near-miss error: %v", err)
	}
}
