package integration

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestHostileInput throws malformed and hostile requests at the API and
// the proxy of the real binary. Every one gets a clean 4xx (or a refused
// connection); none gets a 5xx, and the server keeps serving.
func TestHostileInput(t *testing.T) {
	s := startServer(t, t.TempDir())
	defer s.stop()
	key := s.adminKey()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer down.Close()
	call(t, "POST", s.apiURL+"/v1/secrets", key, `{"name":"TOKEN","value":"hostile-test-value"}`)
	// A second workspace with its own secret: references across workspaces must fail.
	_, wsBody := call(t, "POST", s.apiURL+"/v1/workspaces", key, `{"name":"other"}`)
	otherKey := between(wsBody, `"key":"`, `"`)
	call(t, "POST", s.apiURL+"/v1/secrets", otherKey, `{"name":"OTHER_ONLY","value":"other-workspace-value"}`)
	_, keyBody := call(t, "POST", s.apiURL+"/v1/keys", key, `{"name":"revoked"}`)
	revoked, revokedID := between(keyBody, `"key":"`, `"`), between(keyBody, `"id":"`, `"`)
	call(t, "DELETE", s.apiURL+"/v1/keys/"+revokedID, key, "")

	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	huge := `{"name":"HUGE","value":"` + strings.Repeat("A", 2<<20) + `"}`
	apiCases := []struct{ name, method, path, key, body string }{
		{"malformed", "POST", "/v1/secrets", key, `{"name":`},
		{"huge body", "POST", "/v1/secrets", key, huge},
		{"deep nesting", "POST", "/v1/secrets", key, deep},
		{"deep nesting in value", "POST", "/v1/queues/x/jobs", key, `{"payload":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`},
		{"invalid utf-8 name", "POST", "/v1/secrets", key, "{\"name\":\"A\xff\xfe\",\"value\":\"v\"}"},
		{"invalid utf-8 value", "POST", "/v1/secrets", key, "{\"name\":\"UTF\",\"value\":\"\xff\xfe\xfd\"}"},
		{"null body", "POST", "/v1/secrets", key, `null`},
		{"number body", "POST", "/v1/secrets", key, `42`},
		{"string body", "POST", "/v1/secrets", key, `"x"`},
		{"bad name chars", "POST", "/v1/secrets", key, `{"name":"A/../B","value":"v"}`},
		{"name with template", "POST", "/v1/secrets", key, `{"name":"${{ secrets.TOKEN }}","value":"v"}`},
		{"path traversal", "GET", "/v1/secrets/..%2F..%2Fetc", key, ""},
		{"very long path", "GET", "/v1/secrets/" + strings.Repeat("A", 10000), key, ""},
		{"unicode name in path", "GET", "/v1/secrets/%E2%98%83", key, ""},
		{"reserved credential name", "GET", "/v1/secrets/rotor:callback_secret", key, ""},
		{"other workspace secret", "GET", "/v1/secrets/OTHER_ONLY", key, ""},
		{"revoked key", "GET", "/v1/secrets", revoked, ""},
		{"garbage key", "GET", "/v1/secrets", "garbage;key=1,%00", ""},
		{"very long key", "GET", "/v1/secrets", strings.Repeat("k", 5000), ""},
		{"audit absurd limit", "GET", "/v1/audit?limit=99999999999999999999", key, ""},
		{"audit negative cursor", "GET", "/v1/audit?cursor=-5", key, ""},
		{"audit bad since", "GET", "/v1/audit?since=%00", key, ""},
		{"queue unterminated reference", "POST", "/v1/queues", key, `{"name":"q1","callback_url":"https://x.example/${{ secrets.TOKEN"}`},
		{"queue other workspace secret", "POST", "/v1/queues", key, `{"name":"q2","callback_url":"https://x.example/${{ secrets.OTHER_ONLY }}"}`},
		{"queue header injection", "POST", "/v1/queues", key, `{"name":"q3","callback_url":"https://x.example/","callback_headers":{"X":"a\r\nB: c"}}`},
		{"queue absurd url", "POST", "/v1/queues", key, `{"name":"q4","callback_url":"https://` + strings.Repeat("a", 70000) + `.example/"}`},
		{"queue javascript url", "POST", "/v1/queues", key, `{"name":"q5","callback_url":"javascript:alert(1)"}`},
		{"job bad delay", "POST", "/v1/queues/none/jobs", key, `{"payload":{},"delay_seconds":1e308}`},
		{"job huge idempotency key", "POST", "/v1/queues/none/jobs", key, `{"payload":{},"idempotency_key":"` + strings.Repeat("k", 1000) + `"}`},
		{"method override", "TRACE", "/v1/secrets", key, ""},
		{"queue huge header value", "POST", "/v1/queues", key, `{"name":"q6","callback_url":"https://x.example/","callback_headers":{"X":"` + strings.Repeat("v", 9000) + `"}}`},
		{"queue too many headers", "POST", "/v1/queues", key, `{"name":"q7","callback_url":"https://x.example/","callback_headers":{` + manyHeaders(60) + `}}`},
		{"key create huge name", "POST", "/v1/keys", key, `{"name":"` + strings.Repeat("n", 5000) + `"}`},
		{"workspace bad name", "POST", "/v1/workspaces", key, `{"name":"../etc"}`},
		{"rotate with template value of other workspace", "PATCH", "/v1/secrets/OTHER_ONLY", key, `{"value":"x"}`},
		{"unknown endpoint", "GET", "/v1/../../etc/passwd", key, ""},
	}
	for _, c := range apiCases {
		code, body := call(t, c.method, s.apiURL+c.path, c.key, c.body)
		if code >= 500 || code < 400 {
			t.Errorf("API %s: status %d: %.200s", c.name, code, body)
		}
	}

	// The proxy, spoken to raw.
	proxyAddr := strings.TrimPrefix(s.proxyURL, "http://")
	downHost := strings.TrimPrefix(down.URL, "http://")
	auth := "Proxy-Authorization: Bearer " + key + "\r\n"
	rawCases := []struct{ name, req string }{
		{"unknown reference", "GET http://" + downHost + "/ HTTP/1.1\r\nHost: " + downHost + "\r\n" + auth + "X-K: ${{ secrets.NOPE }}\r\n\r\n"},
		{"unterminated reference", "GET http://" + downHost + "/ HTTP/1.1\r\nHost: " + downHost + "\r\n" + auth + "X-K: ${{ secrets.TOKEN\r\n\r\n"},
		{"other workspace secret", "GET http://" + downHost + "/ HTTP/1.1\r\nHost: " + downHost + "\r\n" + auth + "X-K: ${{ secrets.OTHER_ONLY }}\r\n\r\n"},
		{"no proxy auth", "GET http://" + downHost + "/ HTTP/1.1\r\nHost: " + downHost + "\r\n\r\n"},
		{"revoked key", "GET http://" + downHost + "/ HTTP/1.1\r\nHost: " + downHost + "\r\nProxy-Authorization: Bearer " + revoked + "\r\n\r\n"},
		{"CL and TE both", "POST http://" + downHost + "/ HTTP/1.1\r\nHost: " + downHost + "\r\n" + auth + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"two content lengths", "POST http://" + downHost + "/ HTTP/1.1\r\nHost: " + downHost + "\r\n" + auth + "Content-Length: 5\r\nContent-Length: 7\r\n\r\nhello"},
		{"bad chunk", "POST http://" + downHost + "/ HTTP/1.1\r\nHost: " + downHost + "\r\n" + auth + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"},
		{"absurd url", "GET http://" + downHost + "/" + strings.Repeat("a", 100000) + " HTTP/1.1\r\nHost: " + downHost + "\r\n" + auth + "\r\n"},
		{"reference in host header", "GET http://" + downHost + "/ HTTP/1.1\r\nHost: ${{secrets.TOKEN}}.example\r\n" + auth + "\r\n"},
		{"not a proxy request", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"garbage", "\x16\x03\x01\x02\x00garbage\r\n\r\n"},
		{"header injection value", "GET http://" + downHost + "/ HTTP/1.1\r\nHost: " + downHost + "\r\n" + auth + "X-K: ${{ secrets.TOKEN }}\r\n\r\n"},
		{"reference outside JSON string", "POST http://" + downHost + "/ HTTP/1.1\r\nHost: " + downHost + "\r\n" + auth + "Content-Type: application/json\r\nContent-Length: 28\r\n\r\n{\"a\": ${{ secrets.TOKEN }}}\n"},
		{"CONNECT without auth", "CONNECT " + downHost + " HTTP/1.1\r\nHost: " + downHost + "\r\n\r\n"},
	}
	n5xx := 0
	for _, c := range rawCases {
		status, err := rawRequest(proxyAddr, c.req)
		if err != nil {
			continue // a refused or closed connection is a clean refusal
		}
		if status >= 500 {
			n5xx++
			t.Errorf("proxy %s: status %d", c.name, status)
		}
	}
	total := len(apiCases) + len(rawCases)
	if total < 50 {
		t.Fatalf("only %d hostile cases", total)
	}
	// Still serving.
	if code, _ := call(t, "GET", s.apiURL+"/v1/secrets", key, ""); code != 200 {
		t.Fatalf("API not serving after the hostile input: %d", code)
	}
	if code, _ := call(t, "GET", s.opsURL+"/readyz", "", ""); code != 200 {
		t.Fatal("not ready after the hostile input")
	}
	t.Logf("%d hostile cases (%d API, %d proxy): no 5xx", total, len(apiCases), len(rawCases))
}

func manyHeaders(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`"X-H%d":"v"`, i)
	}
	return strings.Join(parts, ",")
}

func between(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i+len(start):]
	if j := strings.Index(s, end); j >= 0 {
		return s[:j]
	}
	return s
}

// rawRequest writes req to addr and returns the response status.
func rawRequest(addr, req string) (int, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		return 0, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0, err
	}
	var proto string
	var status int
	if _, err := fmt.Sscanf(line, "%s %d", &proto, &status); err != nil {
		return 0, err
	}
	return status, nil
}
