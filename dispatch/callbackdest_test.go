package dispatch_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/proxy"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
)

func (h *harness) member() vault.Actor {
	h.t.Helper()
	ctx := context.Background()
	_, key, err := h.ve.Vault.CreateAPIKey(ctx, h.ve.Operator, vault.CreateAPIKeyRequest{Name: "m", Role: vault.RoleMember})
	if err != nil {
		h.t.Fatal(err)
	}
	a, err := h.ve.Vault.Authenticate(ctx, key)
	if err != nil {
		h.t.Fatal(err)
	}
	return a
}

// TestMemberCannotChooseCallbackDestination: the attack of issue 10. A
// member key points a queue at a host it controls and enqueues a job; Rotor
// must not send that host the workspace callback secret or a signature under
// the signing secret, which the member may not read.
func TestMemberCannotChooseCallbackDestination(t *testing.T) {
	h := newHarness(t)
	h.start()
	ctx := context.Background()
	member := h.member()
	evil := h.up.URL + "/steal"
	_, err := h.svc.CreateQueue(ctx, member, "evil", dispatch.QueueSpec{CallbackURL: &evil})
	if err == nil {
		// Show what the attack gets on code without the check.
		j, _, _ := h.svc.Enqueue(ctx, member, "evil", dispatch.EnqueueRequest{Payload: []byte(`{"forged":true}`)})
		h.waitJob(j.ID, "attempted", attempts(1))
		got := h.last()
		t.Fatalf("a member created a queue at its own host; the host received a Bearer credential (%v) and a signature that verifies: %v",
			strings.HasPrefix(got.Header.Get("Authorization"), "Bearer rcs_"), verifyStandardWebhook(string(h.creds.SigningSecret.Bytes()), got.Header, got.Body))
	}
	if !errors.Is(err, vault.ErrForbidden) || !strings.Contains(err.Error(), "callback_url") || !strings.Contains(err.Error(), "admin") {
		t.Fatalf("member queue at an unapproved host: %v", err)
	}
	// PATCH creating the queue is the same check.
	if _, _, err := h.svc.UpdateQueue(ctx, member, "evil", dispatch.QueueSpec{CallbackURL: &evil}); !errors.Is(err, vault.ErrForbidden) {
		t.Fatalf("member PATCH-create: %v", err)
	}
	// An admin-made queue at that host: the member may change its path and
	// headers, not its scheme, host or port.
	h.queue("ops", dispatch.QueueSpec{CallbackURL: &evil})
	other := h.up.URL + "/other"
	if _, _, err := h.svc.UpdateQueue(ctx, member, "ops", dispatch.QueueSpec{CallbackURL: &other}); err != nil {
		t.Fatalf("member changing only the path: %v", err)
	}
	u, _ := url.Parse(h.up.URL)
	for _, moved := range []string{"http://localhost:" + u.Port() + "/x", "https://" + u.Host + "/x", "http://127.0.0.1:1/x"} {
		if _, _, err := h.svc.UpdateQueue(ctx, member, "ops", dispatch.QueueSpec{CallbackURL: &moved}); !errors.Is(err, vault.ErrForbidden) {
			t.Fatalf("member moving the queue to %s: %v", moved, err)
		}
	}
	// A bare host approves the default ports only, not this one.
	if _, err := h.ve.Vault.SetCallbackAllowedHosts(ctx, h.ve.Operator, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.CreateQueue(ctx, member, "evil", dispatch.QueueSpec{CallbackURL: &evil}); !errors.Is(err, vault.ErrForbidden) {
		t.Fatalf("member queue at an unapproved port: %v", err)
	}
	// Once an admin approves the host and port, members may use it.
	if _, err := h.ve.Vault.SetCallbackAllowedHosts(ctx, h.ve.Operator, []string{u.Host}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.CreateQueue(ctx, member, "evil", dispatch.QueueSpec{CallbackURL: &evil}); err != nil {
		t.Fatalf("member queue at an approved host: %v", err)
	}
	if _, err := h.ve.Vault.SetCallbackAllowedHosts(ctx, member, []string{"attacker.test"}); !errors.Is(err, vault.ErrForbidden) {
		t.Fatalf("member changing the callback allowed_hosts: %v", err)
	}
}

// TestCallbackCredentialObeysAllowedHosts: the credential and the signature
// go only to hosts in the callback secret's allowed_hosts, whoever made the
// queue; the request is refused rather than sent bare.
func TestCallbackCredentialObeysAllowedHosts(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.queue("q", dispatch.QueueSpec{MaxAttempts: ptr(1)})
	if _, err := h.ve.Vault.SetCallbackAllowedHosts(ctx, h.ve.Operator, []string{"hooks.example.com"}); err != nil {
		t.Fatal(err)
	}
	h.start()
	j := h.enqueue("q", `{}`)
	j = h.waitJob(j.ID, "attempted", attempts(1))
	if h.calls() != 0 {
		got := h.last()
		t.Fatalf("a host outside the callback allowed_hosts got a Bearer credential: %v", strings.HasPrefix(got.Header.Get("Authorization"), "Bearer rcs_"))
	}
	if j.Attempts[0].ErrorCode != proxy.CodeHostNotAllowed {
		t.Fatalf("attempt %+v", j.Attempts[0])
	}
	// The host without the port does not cover it either.
	if _, err := h.ve.Vault.SetCallbackAllowedHosts(ctx, h.ve.Operator, []string{"hooks.example.com", "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.RetryJob(ctx, h.ve.Operator, j.ID); err != nil {
		t.Fatal(err)
	}
	j = h.waitJob(j.ID, "attempted again", attempts(2))
	if h.calls() != 0 || j.Attempts[1].ErrorCode != proxy.CodeHostNotAllowed {
		t.Fatalf("bare host, other port: calls %d, attempt %+v", h.calls(), j.Attempts[1])
	}
	// Approved with its port: delivered with both.
	u, _ := url.Parse(h.up.URL)
	if _, err := h.ve.Vault.SetCallbackAllowedHosts(ctx, h.ve.Operator, []string{"hooks.example.com", u.Host}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.RetryJob(ctx, h.ve.Operator, j.ID); err != nil {
		t.Fatal(err)
	}
	h.waitJob(j.ID, "delivered", func(j storage.Job) bool { return j.Status == storage.JobDelivered })
	got := h.last()
	if got.Header.Get("Authorization") != "Bearer "+string(h.creds.CallbackSecret.Bytes()) ||
		!verifyStandardWebhook(string(h.creds.SigningSecret.Bytes()), got.Header, got.Body) {
		t.Fatalf("approved host: %v", got.Header)
	}
}

// TestCallbackCredentialRequireAllowedHosts: with --proxy-require-allowed-hosts
// a callback secret without allowed_hosts is never attached.
func TestCallbackCredentialRequireAllowedHosts(t *testing.T) {
	h := newHarnessWith(t, func(o *proxy.Options) { o.RequireAllowedHosts = true })
	h.queue("q", dispatch.QueueSpec{MaxAttempts: ptr(1), CallbackURL: ptr(h.up.URL + "/plain")})
	h.start()
	j := h.enqueue("q", `{}`)
	j = h.waitJob(j.ID, "attempted", attempts(1))
	if h.calls() != 0 {
		t.Fatalf("sent (Bearer attached: %v) though the callback secret has no allowed_hosts", strings.HasPrefix(h.last().Header.Get("Authorization"), "Bearer rcs_"))
	}
	if j.Attempts[0].ErrorCode != proxy.CodeHostNotAllowed {
		t.Fatalf("attempt %+v", j.Attempts[0])
	}
}
