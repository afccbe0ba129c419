package web_test

import (
	"context"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"rotor.sh/rotor/vault"
)

var rowRE = regexp.MustCompile(`<tr><td data-l="When"><span title="[^"]*">([0-9: -]+)</span></td><td data-l="Event">([a-z_.]+)</td><td data-l="Resource">secret:([A-Z0-9_]+)</td>`)

// TestAuditPagesAndFilters: 50 rows a page with an Older link that
// continues where the page ended; the actor filter matches a key's id or
// its name (shown beside the id); the time filter bounds both ends.
func TestAuditPagesAndFilters(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	rec, key, err := s.ve.Vault.CreateAPIKey(ctx, s.ve.Operator, vault.CreateAPIKeyRequest{Name: "ci-bot", Role: vault.RoleMember})
	if err != nil {
		t.Fatal(err)
	}
	bot, err := s.ve.Vault.Authenticate(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	// 60 secrets by the operator, then 7 by the bot.
	for i := range 60 {
		s.ve.Secret(t, "OP_"+string(rune('A'+i/26))+string(rune('A'+i%26)), "value-of-operator-secret")
	}
	for i := range 7 {
		if _, err := s.ve.Vault.CreateSecret(ctx, bot, vault.CreateSecretRequest{Name: "BOT_" + string(rune('A'+i)), Value: vault.PlaintextString("value-of-bot-secret")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.ve.Vault.FlushAudit(ctx); err != nil {
		t.Fatal(err)
	}
	c := signIn(t, s.dash, s.ve.Key)
	rows := func(body string) []string {
		var out []string
		for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
			out = append(out, m[3])
		}
		return out
	}
	older := regexp.MustCompile(`id="older" href="([^"]+)"`)
	_, first := c.get("/dashboard/audit?resource_type=secret")
	r1 := rows(first)
	m := older.FindStringSubmatch(first)
	if len(r1) != 50 || m == nil || r1[0] != "BOT_G" {
		t.Fatalf("first page: %d rows %v, older link %v", len(r1), r1, m)
	}
	_, second := c.get("/dashboard/audit" + strings.ReplaceAll(m[1], "&amp;", "&"))
	r2 := rows(second)
	if len(r2) != 17 || older.MatchString(second) {
		t.Fatalf("second page: %d rows, want the remaining 17 and no older link", len(r2))
	}
	seen := map[string]bool{}
	for _, n := range append(r1, r2...) {
		if seen[n] {
			t.Fatalf("%s on both pages", n)
		}
		seen[n] = true
	}
	// By name (the page shows it beside the id) and by id.
	for _, actor := range []string{"ci-bot", rec.ID} {
		_, body := c.get("/dashboard/audit?resource_type=secret&actor=" + url.QueryEscape(actor))
		got := rows(body)
		if len(got) != 7 || !strings.HasPrefix(got[0], "BOT_") || !strings.Contains(body, "ci-bot") {
			t.Fatalf("actor %q: %v", actor, got)
		}
	}
	// A window after everything: nothing; one around now: everything.
	now := time.Now().UTC()
	_, none := c.get("/dashboard/audit?resource_type=secret&since=" + now.Add(time.Hour).Format("2006-01-02T15:04"))
	_, all := c.get("/dashboard/audit?resource_type=secret&since=" + now.Add(-time.Hour).Format("2006-01-02T15:04") + "&until=" + now.Add(time.Hour).Format("2006-01-02T15:04"))
	_, before := c.get("/dashboard/audit?resource_type=secret&until=" + now.Add(-time.Hour).Format("2006-01-02T15:04"))
	if len(rows(none)) != 0 || len(rows(all)) != 50 || len(rows(before)) != 0 {
		t.Fatalf("time filters: %d after, %d within, %d before", len(rows(none)), len(rows(all)), len(rows(before)))
	}
	if res, body := c.get("/dashboard/audit?since=yesterday"); res.StatusCode != 422 || !strings.Contains(body, `id="error"`) {
		t.Fatalf("bad time: %d", res.StatusCode)
	}
}
