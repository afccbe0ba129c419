package dispatch_test

import (
	"context"
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

// TestDeliveryPathsAgree: the same jobs delivered through the proxy's
// loopback listener and in-process (proxy.InternalTransport, what rotor
// serve uses since issue 16's session 4) end with the same attempt
// records: delivered with references resolved, refused for a secret
// deleted since enqueue or bound to other hosts (nothing reaches the
// callback), the callback's own 500, a refused connection and a timeout.
// No resolved value reaches a job record, a log line or the bbolt file on
// either path.
func TestDeliveryPathsAgree(t *testing.T) {
	type outcome struct {
		status   int
		code     string
		words    string
		jobState string
	}
	run := func(t *testing.T, loopback bool) (map[string]outcome, int) {
		h := newHarnessVia(t, loopback, nil)
		h.respond = func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/fail") {
				w.WriteHeader(500)
				return
			}
			w.Write([]byte("ok " + r.Header.Get("X-API-Key"))) // an echo, scrubbed
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := "http://" + ln.Addr().String() + "/x"
		ln.Close()
		release := make(chan struct{})
		slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		t.Cleanup(slow.Close)
		t.Cleanup(func() { close(release) })
		h.ve.Secret(t, "GONE_TOKEN", "gone-value-0123456789")
		h.ve.Secret(t, "BOUND_TOKEN", "bound-value-0123456789", "api.example.com")
		hdr := &map[string]string{"X-API-Key": "${{ secrets.NOTIFY_TOKEN }}"}
		h.queue("ok", dispatch.QueueSpec{CallbackHeaders: hdr})
		h.queue("gone", dispatch.QueueSpec{MaxAttempts: ptr(1), CallbackURL: ptr(h.up.URL + "/g?t=${{ secrets.GONE_TOKEN }}")})
		h.queue("bound", dispatch.QueueSpec{MaxAttempts: ptr(1), CallbackHeaders: &map[string]string{"X-Bound": "${{ secrets.BOUND_TOKEN }}"}})
		h.queue("fail", dispatch.QueueSpec{MaxAttempts: ptr(1), CallbackURL: ptr(h.up.URL + "/fail?token=${{ secrets.NOTIFY_TOKEN }}")})
		h.queue("refused", dispatch.QueueSpec{MaxAttempts: ptr(1), CallbackURL: &closed})
		h.queue("slow", dispatch.QueueSpec{MaxAttempts: ptr(1), CallbackURL: ptr(slow.URL + "/x"), Timeout: ptr(time.Second)})
		if err := h.ve.Vault.DeleteSecret(context.Background(), h.ve.Operator, "GONE_TOKEN"); err != nil {
			t.Fatal(err)
		}
		h.start()
		out := map[string]outcome{}
		var recs []byte
		for _, q := range []string{"ok", "gone", "bound", "fail", "refused", "slow"} {
			j := h.enqueue(q, `{"token":"${{ secrets.NOTIFY_TOKEN }}"}`)
			j = h.waitJob(j.ID, "finished", func(j storage.Job) bool { return j.Status == storage.JobDelivered || j.Status == storage.JobDead })
			a := j.Attempts[0]
			out[q] = outcome{a.StatusCode, a.ErrorCode, a.Error, j.Status}
			if q == "ok" && (a.ResponseExcerpt == "" || strings.Contains(a.ResponseExcerpt, token)) {
				t.Errorf("ok: response excerpt %q: want the echo, scrubbed", a.ResponseExcerpt)
			}
			b, _ := json.Marshal(j)
			recs = append(recs, b...)
		}
		calls := h.calls()
		h.stop()
		db, _ := os.ReadFile(h.ve.DBPath)
		where := map[string][]byte{"job records": recs, "logs": []byte(h.ve.Logs.String()), "bbolt file": db}
		for _, v := range []string{token, "bound-value-0123456789", string(h.creds.CallbackSecret.Bytes())} {
			leakcheck.Scan(t, v, where)
		}
		if n := strings.Count(h.ve.Logs.String(), `"msg":"`+dispatch.LogMsgAttempt+`"`); n != 6 {
			t.Errorf("%d attempt lines, want 6", n)
		}
		return out, calls
	}
	var got [2]map[string]outcome
	var calls [2]int
	t.Run("loopback", func(t *testing.T) { got[0], calls[0] = run(t, true) })
	t.Run("in-process", func(t *testing.T) { got[1], calls[1] = run(t, false) })
	want := map[string]struct{ status, code, state string }{
		"ok":      {"200", "", storage.JobDelivered},
		"gone":    {"0", dispatch.ErrCodeSecretMissing, storage.JobDead},
		"bound":   {"0", "host_not_allowed", storage.JobDead},
		"fail":    {"500", dispatch.ErrCodeHTTPStatus, storage.JobDead},
		"refused": {"0", dispatch.ErrCodeConnectionFailed, storage.JobDead},
		"slow":    {"0", dispatch.ErrCodeTimeout, storage.JobDead},
	}
	for q, w := range want {
		a, b := got[0][q], got[1][q]
		if a != b {
			t.Errorf("%s: loopback %+v, in-process %+v", q, a, b)
		}
		if itoa(b.status) != w.status || b.code != w.code || b.jobState != w.state {
			t.Errorf("%s: in-process %+v, want status %s code %q state %s", q, b, w.status, w.code, w.state)
		}
	}
	// Only ok and fail reached the callback (the refusals sent nothing).
	if calls[0] != 2 || calls[1] != 2 {
		t.Errorf("callback calls: loopback %d, in-process %d, want 2", calls[0], calls[1])
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
