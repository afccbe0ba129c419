package dispatch_test

import (
	"context"
	"errors"
	"testing"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/vault"
)

// TestAttackMemberCallbackHostTricks: a member key tries URL forms that name
// an approved host somewhere in the text, or a host that folds to an
// approved one under Unicode case rules, to get the workspace's callback
// credentials sent to another host. Every one must be refused (403), and
// the plain forms of the approved hosts accepted. Host names compare byte
// for byte after ASCII lower-casing: U+212A (KELVIN SIGN) lower-cases to "k"
// and U+017F (LATIN SMALL LETTER LONG S) folds to "s" under Unicode rules,
// yet DNS, /etc/hosts and a TLS certificate see a different name.
func TestAttackMemberCallbackHostTricks(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	member := h.member()
	if _, err := h.ve.Vault.SetCallbackAllowedHosts(ctx, h.ve.Operator, []string{
		"hooks.example.com", "https://pay.example.com", "[::1]:8443", "*.wild.example.com", "*.hooks.example.net",
	}); err != nil {
		t.Fatal(err)
	}
	refused := []string{
		"http://hooks.example.com.evil.test/",
		"http://evil.test/#@hooks.example.com",
		"http://hooks.example.com@evil.test/",
		"http://hooks.example.com:80@evil.test/",
		"http://hooks.example.com:8080/",
		"http://pay.example.com/",
		"https://pay.example.com:8443/",
		"http://[::1]/",
		"http://[::1]:8444/",
		"http://[::ffff:127.0.0.1]:8443/",
		"http://[0:0::1]:8443/",
		"http://wild.example.com/",
		"http://x.wild.example.com.evil.test/",
		"http://evil.test/?u=https://pay.example.com",
		"http://hoo\u212As.example.com/",
		"https://x.hoo\u212As.example.net/",
		"http://hooks.example.com%2F@evil.test/",
	}
	for i, raw := range refused {
		name := "trick-" + string(rune('a'+i))
		_, err := h.svc.CreateQueue(ctx, member, name, dispatch.QueueSpec{CallbackURL: &raw})
		if err == nil {
			t.Errorf("member queue at %q was accepted", raw)
			continue
		}
		var inv *dispatch.MissingSecretsError
		if !errors.Is(err, vault.ErrForbidden) && !errors.Is(err, dispatch.ErrInvalidQueue) || errors.As(err, &inv) {
			t.Errorf("member queue at %q: %v; want forbidden or invalid", raw, err)
		}
	}
	for i, raw := range []string{
		"http://hooks.example.com/x", "https://HOOKS.Example.COM./x", "https://pay.example.com/", "http://[::1]:8443/",
		"https://a.b.wild.example.com/",
	} {
		name := "ok-" + string(rune('a'+i))
		if _, err := h.svc.CreateQueue(ctx, member, name, dispatch.QueueSpec{CallbackURL: &raw}); err != nil {
			t.Errorf("member queue at approved %q: %v", raw, err)
		}
	}

	// An admin's queue at an unapproved partner host: the member may keep
	// its destination (change the path), not move it to a look-alike.
	partner := "https://kpartners.example.org/hook"
	if _, err := h.svc.CreateQueue(ctx, h.ve.Operator, "partner", dispatch.QueueSpec{CallbackURL: &partner}); err != nil {
		t.Fatal(err)
	}
	for _, moved := range []string{
		"https://\u212Apartners.example.org/hook",
		"https://kpartner\u017F.example.org/hook",
		"https://kpartners.example.org:8443/hook",
		"http://kpartners.example.org:443/hook",
		"https://kpartners.example.org.evil.test/hook",
	} {
		if _, _, err := h.svc.UpdateQueue(ctx, member, "partner", dispatch.QueueSpec{CallbackURL: &moved}); err == nil {
			t.Errorf("member moved the admin's queue to %q", moved)
		}
	}
	samePlace := "https://KPARTNERS.example.org./other?x=1"
	if _, _, err := h.svc.UpdateQueue(ctx, member, "partner", dispatch.QueueSpec{CallbackURL: &samePlace}); err != nil {
		t.Errorf("member changing only the path and case: %v", err)
	}
}
