package dispatch_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/internal/leakcheck"
	"rotor.sh/rotor/storage"
)

// TestAttemptDetailScrubbed: an attempt keeps the request as sent
// (templates), the callback's headers and the start of its body, with the
// resolved value (scrubbed by the proxy) and the credentials the proxy
// added (callback secret, reflected by an echoing handler) removed before
// anything is stored.
func TestAttemptDetailScrubbed(t *testing.T) {
	h := newHarness(t)
	h.respond = func(w http.ResponseWriter, r *http.Request) {
		// An echo handler: reflects what it received, credentials included.
		w.Header().Set("X-Echo-Auth", r.Header.Get("Authorization"))
		w.Header().Set("Set-Cookie", "session=abc123456789")
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write([]byte("token=" + r.URL.Query().Get("token") + "\nauth=" + r.Header.Get("Authorization") + "\nkey=" + r.Header.Get("X-API-Key")))
	}
	h.queue("q", dispatch.QueueSpec{MaxAttempts: ptr(1), CallbackHeaders: &map[string]string{"X-API-Key": "${{ secrets.NOTIFY_TOKEN }}"}})
	h.start()
	j := h.enqueue("q", `{"a":1}`)
	j = h.waitJob(j.ID, "dead", func(j storage.Job) bool { return j.Status == storage.JobDead })
	a := j.Attempts[0]
	if a.StatusCode != http.StatusTeapot || !strings.Contains(a.Error, "418") {
		t.Fatalf("attempt %+v", a)
	}
	if a.RequestHeaders["X-Api-Key"] != "${{ secrets.NOTIFY_TOKEN }}" || !strings.Contains(a.RequestURL, "${{ secrets.NOTIFY_TOKEN }}") {
		t.Fatalf("request as sent: %q %v", a.RequestURL, a.RequestHeaders)
	}
	if !strings.Contains(a.RequestHeaders["Authorization"], "callback secret") {
		t.Fatalf("the callback credential is not named: %v", a.RequestHeaders)
	}
	for k := range a.RequestHeaders {
		if strings.HasPrefix(strings.ToLower(k), "rotor-internal") || strings.EqualFold(k, "Proxy-Authorization") {
			t.Fatalf("internal header %s kept", k)
		}
	}
	if !strings.Contains(a.ResponseExcerpt, "token=${{ secrets.NOTIFY_TOKEN }}") || !strings.Contains(a.ResponseExcerpt, "auth=Bearer [redacted]") {
		t.Fatalf("excerpt %q", a.ResponseExcerpt)
	}
	if a.ResponseHeaders["Set-Cookie"] != "[redacted]" || a.ResponseHeaders["X-Echo-Auth"] != "Bearer [redacted]" {
		t.Fatalf("response headers %v", a.ResponseHeaders)
	}
	h.stop()
	rec, _ := json.Marshal(h.job(j.ID))
	db, _ := os.ReadFile(h.ve.DBPath)
	where := map[string][]byte{"bbolt file": db, "job record": rec, "logs": []byte(h.ve.Logs.String())}
	leakcheck.Scan(t, token, where)
	leakcheck.Scan(t, string(h.creds.CallbackSecret.Bytes()), where)
}

// TestAttemptErrorInWords: failures to reach the callback are named
// (refused, DNS) rather than left as a bare code.
func TestAttemptErrorInWords(t *testing.T) {
	h := newHarness(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/x"
	ln.Close()
	dns := "http://no-such-host.invalid/x"
	// A TLS callback whose certificate the proxy does not trust.
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(tlsSrv.Close)
	// A callback that answers after the queue's timeout.
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	h.queue("refused", dispatch.QueueSpec{MaxAttempts: ptr(1), CallbackURL: &closed})
	h.queue("dns", dispatch.QueueSpec{MaxAttempts: ptr(1), CallbackURL: &dns})
	h.queue("tls", dispatch.QueueSpec{MaxAttempts: ptr(1), CallbackURL: ptr(tlsSrv.URL + "/x")})
	h.queue("slow", dispatch.QueueSpec{MaxAttempts: ptr(1), CallbackURL: ptr(slow.URL + "/x"), Timeout: ptr(time.Second)})
	h.start()
	for q, want := range map[string]string{"refused": "connection refused", "dns": "DNS lookup failed", "tls": "TLS failed: the callback's certificate is not trusted (signed by an unknown authority)",
		"slow": "timed out"} {
		j := h.enqueue(q, `{}`)
		j = h.waitJob(j.ID, "dead", func(j storage.Job) bool { return j.Status == storage.JobDead })
		if a := j.Attempts[0]; !strings.Contains(a.Error, want) || a.ErrorCode == "" {
			t.Errorf("%s: attempt %+v, want error %q", q, a, want)
		}
	}
}
