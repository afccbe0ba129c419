package dispatch

import (
	"net/http"
	"testing"
	"time"

	"rotor.sh/rotor/proxy"
)

func TestProxyTarget(t *testing.T) {
	for _, c := range []struct{ in, target, scheme string }{
		{"https://h/p/${{ secrets.A }}", "http://h/p/$%7B%7B%20secrets.A%20%7D%7D", "https"},
		{"HTTPS://h/x", "http://h/x", "https"},
		{"http://h/x?q=1", "http://h/x?q=1", ""},
		{"httpx://h", "httpx://h", ""},
	} {
		if target, scheme := ProxyTarget(c.in); target != c.target || scheme != c.scheme {
			t.Errorf("ProxyTarget(%q) = %q %q, want %q %q", c.in, target, scheme, c.target, c.scheme)
		}
	}
}

// TestProxyHeaders: a job and a workflow step carry their own ids, and the
// callback secret goes only where the template sets no Authorization.
func TestProxyHeaders(t *testing.T) {
	now := time.Unix(1700000000, 0)
	h := http.Header{}
	ProxyHeaders{Token: "tok", Workspace: "ws", Actor: "key", Job: "job_1", WebhookID: "job_1", Attempt: 3, Scheme: "https", Now: now}.Set(h)
	for k, want := range map[string]string{
		"webhook-id": "job_1", "webhook-timestamp": "1700000000", "Rotor-Attempt": "3", "Proxy-Authorization": "Bearer tok",
		proxy.HeaderInternalWorkspace: "ws", proxy.HeaderInternalActor: "key", proxy.HeaderInternalJob: "job_1",
		proxy.HeaderInternalAttempt: "3", proxy.HeaderInternalSign: "standard-webhooks", proxy.HeaderInternalScheme: "https",
		proxy.HeaderInternalAuth: "callback", proxy.HeaderInternalRun: "", proxy.HeaderInternalStep: "",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("job %s = %q, want %q", k, got, want)
		}
	}
	h = http.Header{"Authorization": {"Bearer own"}}
	ProxyHeaders{Token: "tok", Workspace: "ws", Actor: "key", Run: "run_1", Step: "s", WebhookID: "run_1/s", Attempt: 1, Now: now}.Set(h)
	for k, want := range map[string]string{
		proxy.HeaderInternalRun: "run_1", proxy.HeaderInternalStep: "s", proxy.HeaderInternalJob: "",
		proxy.HeaderInternalScheme: "", proxy.HeaderInternalAuth: "", "Authorization": "Bearer own", "webhook-id": "run_1/s",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("step %s = %q, want %q", k, got, want)
		}
	}
}

func TestProxyErrorCode(t *testing.T) {
	for in, want := range map[string]string{
		proxy.CodeSecretNotFound: ErrCodeSecretMissing, proxy.CodeUpstreamUnreachable: ErrCodeConnectionFailed,
		proxy.CodeUpstreamTimeout: ErrCodeTimeout, proxy.CodeHostNotAllowed: proxy.CodeHostNotAllowed,
	} {
		if got := ProxyErrorCode(in); got != want {
			t.Errorf("ProxyErrorCode(%q) = %q, want %q", in, got, want)
		}
	}
}
