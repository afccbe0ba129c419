package proxy_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"rotor.sh/rotor/proxy"
	"rotor.sh/rotor/vault"
	"rotor.sh/rotor/vault/vaulttest"
)

// TestScrubCacheFollowsVault: scrubbers are kept per set of resolved
// values (a cached build must not scrub a stale value and miss the current
// one), and dropped the moment the vault drops a value they derive from
// (rotation, deletion, a keyring change), not at the next request: the
// proxy never keeps forms of a plaintext the vault no longer holds.
func TestScrubCacheFollowsVault(t *testing.T) {
	ve := vaulttest.New(t)
	p, err := proxy.New(proxy.Options{Vault: ve.Vault, Logger: ve.Logger, Registerer: ve.Registry})
	if err != nil {
		t.Fatal(err)
	}
	srv := serveProxy(t, p)
	t.Cleanup(func() { srv.Close(); p.CloseIdleConnections() })
	var sent []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sent = append(sent, r.Header.Get("X-Key"))
		io.WriteString(w, "echo "+r.Header.Get("X-Key")+" "+r.Header.Get("X-User"))
	}))
	t.Cleanup(up.Close)
	pu, _ := url.Parse(srv.URL)
	pu.User = url.UserPassword("rotor", ve.Key)
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}, Timeout: 30 * time.Second}
	t.Cleanup(c.CloseIdleConnections)
	get := func(hdr ...string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", up.URL+"/x", nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			t.Fatalf("status %d: %s", res.StatusCode, b)
		}
		return string(b)
	}
	const v1, v2, user = "first-value-1111", "second-value-2222", "account-name-42"
	ve.Secret(t, "TOKEN", v1)
	ve.Secret(t, "USER", user)
	wantLen := func(n int, when string) {
		t.Helper()
		if got := proxy.ScrubCacheLen(p); got != n {
			t.Fatalf("%s: %d scrubbers cached, want %d", when, got, n)
		}
	}
	ref := "${{ secrets.TOKEN }}"
	for i := range 3 {
		if b := get("X-Key", ref); b != "echo "+ref+" " {
			t.Fatalf("request %d: response %q", i, b)
		}
	}
	wantLen(1, "one set of values, resolved three times")
	if b := get("X-Key", ref, "X-User", "${{ secrets.USER }}"); b != "echo "+ref+" ${{ secrets.USER }}" {
		t.Fatalf("two secrets: response %q", b)
	}
	wantLen(2, "a second set")

	nv := vault.PlaintextString(v2)
	if _, err := ve.Vault.UpdateSecret(context.Background(), ve.Operator, vault.UpdateSecretRequest{Name: "TOKEN", Value: &nv}); err != nil {
		t.Fatal(err)
	}
	wantLen(0, "after the rotation, before any request")
	if b := get("X-Key", ref); b != "echo "+ref+" " || sent[len(sent)-1] != v2 {
		t.Fatalf("after rotation: sent %q, response %q", sent[len(sent)-1], b)
	}
	wantLen(1, "the rotated value resolved")

	if b := get("X-User", "${{ secrets.USER }}"); strings.Contains(b, user) {
		t.Fatalf("response holds the value: %q", b)
	}
	wantLen(2, "USER alone")
	if err := ve.Vault.DeleteSecret(context.Background(), ve.Operator, "USER"); err != nil {
		t.Fatal(err)
	}
	wantLen(1, "after deleting USER")
}
