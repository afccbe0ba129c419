package web_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"rotor.sh/rotor/vault"
	"rotor.sh/rotor/vault/vaulttest"
)

// TestAttackLogoutListFlushed: anyone holding any valid key, a member of
// another workspace included, signs in and out 10,000 times (under a
// second); the victim's logout must still hold, so a copy of the victim's
// cookie taken before the logout stays refused. (It did not while the node
// kept one list of 10,000 ids, the oldest going first.)
func TestAttackLogoutListFlushed(t *testing.T) {
	ve := vaulttest.New(t)
	d := newDash(t, ve.Vault, ve.Store, nil)
	page := func(ck *http.Cookie) *http.Response { return do(d, "GET", "/dashboard/audit", nil, ck) }
	victim := sessionCookie(t, do(d, "POST", "/dashboard/login", url.Values{"key": {ve.Key}}, nil))
	stolen := *victim
	do(d, "POST", "/dashboard/logout", url.Values{"csrf": {csrfOf(t, page(victim))}}, victim)
	if signedIn(page(&stolen)) {
		t.Fatal("the logged-out cookie works at once (the basic case)")
	}

	ws, err := ve.Vault.CreateWorkspace(context.Background(), ve.Operator, "attacker")
	if err != nil {
		t.Fatal(err)
	}
	_, member, err := ve.Vault.CreateAPIKey(context.Background(), vault.Actor{KeyID: ws.AdminKey.ID, WorkspaceID: ws.Workspace.ID, Role: vault.RoleAdmin},
		vault.CreateAPIKeyRequest{Name: "flood", Role: vault.RoleMember})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10000 {
		ck := sessionCookie(t, do(d, "POST", "/dashboard/login", url.Values{"key": {member}}, nil))
		res := do(d, "POST", "/dashboard/logout", url.Values{"csrf": {csrfOf(t, page(ck))}}, ck)
		if res.StatusCode != http.StatusSeeOther {
			t.Fatalf("logout %d: %d", i, res.StatusCode)
		}
	}
	if signedIn(page(&stolen)) {
		t.Fatal("after 10,000 sign-outs by another workspace's member key, the victim's logged-out cookie works again")
	}
}
