package workflow

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
)

// TestAttackInjectedEncodedReference: the guard reads each field as the
// proxy will: Basic credentials decoded from base64, a form body (whatever
// the definition's body shape, and whatever data set the Content-Type)
// percent-decoded. Data hiding a reference in those encodings fails the
// step; the same shapes without a reference pass.
func TestAttackInjectedEncodedReference(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	ref := "${{ secrets.OTHER }}"
	pct := url.QueryEscape(ref)
	for _, c := range []struct {
		name, def, bad, good string
	}{
		{"basic", `{"steps":[{"id":"a","request":{"method":"GET","url":"https://h.example/","headers":{"authorization":"${{ input.v }}"}}}]}`,
			`{"v":"Basic ` + b64("u:"+ref) + `"}`, `{"v":"Basic ` + b64("u:p$ss") + `"}`},
		{"basic part", `{"steps":[{"id":"a","request":{"method":"GET","url":"https://h.example/","headers":{"Authorization":"basic ${{ input.v }}"}}}]}`,
			`{"v":"` + b64(ref+":x") + `"}`, `{"v":"` + b64("u:p") + `"}`},
		{"form text", `{"steps":[{"id":"a","request":{"method":"POST","url":"https://h.example/","headers":{"Content-Type":"application/x-www-form-urlencoded; charset=utf-8"},"body":"q=${{ input.v }}"}}]}`,
			`{"v":"` + pct + `"}`, `{"v":"%24%7B%7B+env.X+%7D%7D"}`},
		{"form json", `{"steps":[{"id":"a","request":{"method":"POST","url":"https://h.example/","headers":{"Content-Type":"application/x-www-form-urlencoded"},"body":{"q":"${{ input.v }}"}}}]}`,
			`{"v":"` + pct + `"}`, `{"v":"plain"}`},
		{"content type from data", `{"steps":[{"id":"a","request":{"method":"POST","url":"https://h.example/","headers":{"Content-Type":"${{ input.ct }}"},"body":"${{ input.v }}"}}]}`,
			`{"ct":"application/x-www-form-urlencoded","v":"` + pct + `"}`, `{"ct":"text/plain","v":"` + pct + `"}`},
	} {
		p := mustPlan(t, c.def)
		if _, err := build(p.steps[0], testRun(c.bad)); !errors.Is(err, errInjected) {
			t.Errorf("%s: build = %v, want the injection refused", c.name, err)
		}
		if _, err := build(p.steps[0], testRun(c.good)); err != nil {
			t.Errorf("%s: harmless data refused: %v", c.name, err)
		}
	}
}

// TestRedactCredentialsInOutput: Rotor's own credentials echoed in a
// response body are redacted before the body becomes a step's output, and
// a JSON body stays JSON.
func TestRedactCredentialsInOutput(t *testing.T) {
	body := []byte(`{"headers":{"Authorization":["Bearer rcs_J052-orOM1HRecZKiOTKl_x"]},"k":"RTR_0123abcd_ffee","n":1}`)
	out, tr := outputOf(redactCredentials(body), "application/json")
	s := string(out)
	if tr || strings.Contains(s, "J052") || strings.Contains(s, "0123abcd") || !strings.Contains(s, `rcs_[redacted]`) || !json.Valid(out) {
		t.Fatalf("output %s", s)
	}
}
