package dispatch_test

import (
	"net/http"
	"strings"
	"testing"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/storage"
)

// TestAttackCallbackCrashesRedaction: a callback's answer shaped to trip
// the credential redaction (a form feed after "Bearer", which the regexp
// counts as a space, and "rcſ_" with U+017F, which (?i) folds to "rcs_")
// is recorded redacted. Before issue 16's session 4 either one sliced at
// -1 and the panic in the attempt's goroutine ended the whole server.
func TestAttackCallbackCrashesRedaction(t *testing.T) {
	h := newHarness(t)
	h.respond = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Echo", "rcſ_topsecretvalue")
		w.WriteHeader(500)
		w.Write([]byte("denied: Bearer\fsupersecrettoken and rcſ_anothersecret"))
	}
	h.queue("q", dispatch.QueueSpec{MaxAttempts: ptr(1)})
	h.start()
	j := h.enqueue("q", `{}`)
	j = h.waitJob(j.ID, "dead", func(j storage.Job) bool { return j.Status == storage.JobDead })
	a := j.Attempts[0]
	if a.StatusCode != 500 {
		t.Fatalf("attempt %+v", a)
	}
	for _, leaked := range []string{"supersecrettoken", "anothersecret", "topsecretvalue"} {
		if strings.Contains(a.ResponseExcerpt, leaked) || strings.Contains(a.ResponseHeaders["X-Echo"], leaked) {
			t.Fatalf("%s kept: excerpt %q, header %q", leaked, a.ResponseExcerpt, a.ResponseHeaders["X-Echo"])
		}
	}
	if !strings.Contains(a.ResponseExcerpt, "[redacted]") || !strings.Contains(a.ResponseHeaders["X-Echo"], "[redacted]") {
		t.Fatalf("excerpt %q, header %q", a.ResponseExcerpt, a.ResponseHeaders["X-Echo"])
	}
}
