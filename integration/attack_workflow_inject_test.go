package integration

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"rotor.sh/rotor/internal/leakcheck"
)

// TestAttackWorkflowInjectedEncodedReference: the workflow engine refuses
// data that would add a secret reference to a step's request, but it
// counted references in the wrong context for two places where the proxy
// decodes before it scans: the Basic credentials of an Authorization
// header (base64) and a body the step sends as a form (percent-encoding,
// whatever the body's JSON or text shape in the definition). A caller who
// may only start runs put `${{ secrets.OTHER }}` into the input in those
// encodings, and the proxy resolved OTHER, a secret the definition never
// names, and sent it to the step's host. Each case must fail the step with
// expression_failed and send the upstream nothing holding the value.
func TestAttackWorkflowInjectedEncodedReference(t *testing.T) {
	const other = "other-secret-value-93be71"
	var (
		mu   sync.Mutex
		seen []string
	)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		raw, _ := json.Marshal(r.Header)
		u, pw, _ := r.BasicAuth()
		mu.Lock()
		seen = append(seen, r.URL.String()+"\n"+string(raw)+"\nbasic "+u+":"+pw+"\n"+string(b))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}))
	defer up.Close()
	dir := t.TempDir()
	s := startServer(t, dir)
	key := s.adminKey()
	mustCall(t, 201, "POST", s.apiURL+"/v1/secrets", key, `{"name":"OTHER","value":"`+other+`"}`)
	mustCall(t, 201, "POST", s.apiURL+"/v1/secrets", key, `{"name":"USED","value":"used-secret-value-2a77"}`)

	ref := "${{ secrets.OTHER }}"
	pct := url.QueryEscape(ref) // %24%7B%7B+secrets.OTHER+%7D%7D
	pct20 := strings.ReplaceAll(pct, "+", "%20")
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("u:"+ref))
	cases := []struct {
		name, def, input string
	}{
		{"basic header", `{"steps":[{"id":"s","request":{"method":"GET","url":"` + up.URL + `/b",
			"headers":{"Authorization":"${{ input.auth }}","X-Used":"${{ secrets.USED }}"}}}]}`,
			`{"auth":` + mustJSONString(basic) + `}`},
		{"basic header, base64 part", `{"steps":[{"id":"s","request":{"method":"GET","url":"` + up.URL + `/b2",
			"headers":{"Authorization":"Basic ${{ input.cred }}"}}}]}`,
			`{"cred":` + mustJSONString(strings.TrimPrefix(basic, "Basic ")) + `}`},
		{"form text body", `{"steps":[{"id":"s","request":{"method":"POST","url":"` + up.URL + `/f",
			"headers":{"Content-Type":"application/x-www-form-urlencoded"},"body":"q=${{ input.q }}&k=${{ secrets.USED }}"}}]}`,
			`{"q":` + mustJSONString(pct20) + `}`},
		{"form JSON body", `{"steps":[{"id":"s","request":{"method":"POST","url":"` + up.URL + `/j",
			"headers":{"Content-Type":"application/x-www-form-urlencoded"},"body":{"q":"${{ input.q }}"}}}]}`,
			`{"q":` + mustJSONString(pct) + `}`},
		{"content type from input", `{"steps":[{"id":"s","request":{"method":"POST","url":"` + up.URL + `/c",
			"headers":{"Content-Type":"${{ input.ct }}"},"body":"q=${{ input.q }}"}}]}`,
			`{"ct":"application/x-www-form-urlencoded","q":` + mustJSONString(pct) + `}`},
	}
	for i, c := range cases {
		name := "inject" + string(rune('a'+i))
		putWorkflow(t, s, key, name, c.def)
		run := startRun(t, s, key, name, `{"input":`+c.input+`}`)
		r := waitRun(t, s, key, run.ID, "finished", func(r runView) bool { return r.Status == "failed" || r.Status == "completed" })
		if r.Status != "failed" || r.ErrorCode != "expression_failed" {
			t.Errorf("%s: run %s (%s), want failed with expression_failed", c.name, r.Status, r.ErrorCode)
		}
	}
	mu.Lock()
	got := strings.Join(seen, "\n----\n")
	n := len(seen)
	mu.Unlock()
	if n != 0 {
		t.Errorf("the upstream received %d requests, want none:\n%s", n, got)
	}
	s.stop()
	db, _ := os.ReadFile(filepath.Join(dir, "data", "rotor.db"))
	leakcheck.Scan(t, other, map[string][]byte{"upstream requests": []byte(got), "bbolt file": db, "server output": []byte(s.out.String())})
}

func mustJSONString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
