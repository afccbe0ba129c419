package web_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"rotor.sh/rotor/vault/vaulttest"
)

// TestFlashOnlyFromServer: a page shows a flash message only when the
// server set it for this session. Text in a link's ?flash= (phishing on
// the login page or a signed-in page), a tampered flash, and another
// session's genuine flash are not shown; the server's own one is.
func TestFlashOnlyFromServer(t *testing.T) {
	ve := vaulttest.New(t)
	d := newDash(t, ve.Vault, ve.Store, nil)
	body := func(res *http.Response) string {
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	const phish = "Your key has leaked: call +1 555 0100"
	if b := body(do(d, "GET", "/dashboard/login?flash="+url.QueryEscape(phish), nil, nil)); strings.Contains(b, "call +1 555") || strings.Contains(b, `class="flash"`) {
		t.Fatalf("the login page shows a link's flash:\n%s", b)
	}
	c := signIn(t, d, ve.Key)
	if _, b := c.get("/dashboard/queues?flash=" + url.QueryEscape(phish)); strings.Contains(b, "call +1 555") || strings.Contains(b, `class="flash"`) {
		t.Fatalf("a signed-in page shows a link's flash:\n%s", b)
	}

	res, _ := c.post("/dashboard/settings/secrets", url.Values{"name": {"FLASH_TOKEN"}, "value": {"canary-flash-value-424242"}})
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "flash=") {
		t.Fatalf("create secret: %d %q", res.StatusCode, loc)
	}
	if strings.Contains(loc, "Created") || strings.Contains(loc, "canary-flash") {
		t.Fatalf("the flash travels in clear: %q", loc)
	}
	if _, b := c.get(loc); !strings.Contains(b, `data-flash="Created FLASH_TOKEN"`) {
		t.Fatalf("the server's own flash is not shown:\n%s", b)
	}
	u, _ := url.Parse(loc)
	sealed := u.Query().Get("flash")
	flipped := []byte(sealed)
	flipped[len(flipped)/2] ^= 1
	if _, b := c.get(u.Path + "?flash=" + string(flipped)); strings.Contains(b, `class="flash"`) {
		t.Fatalf("a tampered flash is shown:\n%s", b)
	}
	// Another session of the same key (another browser) and the login
	// page do not show this session's flash: a link cannot carry one
	// user's message to another.
	other := signIn(t, d, ve.Key)
	if _, b := other.get(loc); strings.Contains(b, `class="flash"`) {
		t.Fatalf("another session shows this session's flash:\n%s", b)
	}
	if b := body(do(d, "GET", "/dashboard/login?flash="+sealed, nil, nil)); strings.Contains(b, `class="flash"`) {
		t.Fatalf("the login page shows a sealed flash:\n%s", b)
	}
	// A sealed flash is not a session cookie either.
	if signedIn(do(d, "GET", "/dashboard/audit", nil, &http.Cookie{Name: "rotor_session", Value: sealed})) {
		t.Fatal("a sealed flash opened as a session")
	}
}
