package dispatch_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/storage"
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

// TestAttackCallbackRedirect: the approved callback host answers with a
// redirect to another host (an attacker's). Neither the dispatcher nor the
// proxy may follow it: the other host receives nothing, so neither the
// Bearer credential nor a signature goes there; the attempt is recorded as
// the redirect's status.
func TestAttackCallbackRedirect(t *testing.T) {
	h := newHarness(t)
	var mu sync.Mutex
	stolen := 0
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		stolen++
		mu.Unlock()
	}))
	t.Cleanup(evil.Close)
	// No allowed_hosts: the credentials may go wherever an admin points a
	// queue, and a redirect must not widen that to where the host points.
	codes := []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect}
	var next int
	h.mu.Lock()
	h.respond = func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		code := codes[next%len(codes)]
		next++
		h.mu.Unlock()
		http.Redirect(w, r, evil.URL+"/steal", code)
	}
	h.mu.Unlock()
	h.queue("q", dispatch.QueueSpec{MaxAttempts: ptr(1), CallbackURL: ptr(h.up.URL + "/hook")})
	h.start()
	for _, code := range codes {
		j := h.enqueue("q", `{"n":1}`)
		j = h.waitJob(j.ID, "attempted", attempts(1))
		if j.Attempts[0].StatusCode != code || j.Status != storage.JobDead {
			t.Errorf("redirect %d: attempt %+v, status %s", code, j.Attempts[0], j.Status)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if stolen != 0 || h.calls() != len(codes) {
		t.Fatalf("the redirect target got %d requests (callback host %d)", stolen, h.calls())
	}
}

// racingStore is the real store; just before the first write whose callback
// URL contains trigger, it runs interleave (another client's change landing
// between the member's read and write).
type racingStore struct {
	storage.Store
	trigger    string
	interleave func()
	once       sync.Once
}

func (s *racingStore) UpdateQueue(ctx context.Context, args storage.UpdateQueueArgs) error {
	if strings.Contains(args.Queue.CallbackURL, s.trigger) {
		s.once.Do(s.interleave)
	}
	return s.Store.UpdateQueue(ctx, args)
}

// TestAttackQueueUpdateRace: a member changes only the path of an admin's
// queue (allowed: it keeps the destination) while an admin moves the queue
// to another host between the member's read and write. The member's write
// must not land on the old revision and move the queue back to a host that
// is now a new destination chosen by a member: it is refused, and the
// admin's host stays.
func TestAttackQueueUpdateRace(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	member := h.member()
	first, second := "https://first.example.org/hook", "https://second.example.org/hook"
	h.queue("race", dispatch.QueueSpec{CallbackURL: &first})
	rs := &racingStore{Store: h.ve.Store, trigger: "member-path"}
	svc := dispatch.NewService(rs, h.ve.Vault, nil, nil)
	rs.interleave = func() {
		if _, _, err := svc.UpdateQueue(ctx, h.ve.Operator, "race", dispatch.QueueSpec{CallbackURL: &second}); err != nil {
			t.Errorf("admin move: %v", err)
		}
	}
	back := "https://first.example.org/member-path"
	_, _, err := svc.UpdateQueue(ctx, member, "race", dispatch.QueueSpec{CallbackURL: &back})
	q, gerr := svc.GetQueue(ctx, h.ve.Operator, "race")
	if gerr != nil {
		t.Fatal(gerr)
	}
	if err == nil || !errors.Is(err, vault.ErrForbidden) || q.CallbackURL != second {
		t.Fatalf("member's racing write: %v; queue now at %q, want the admin's %q", err, q.CallbackURL, second)
	}
}
