package dispatch_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/internal/leakcheck"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
)

// verifyEach checks every signature of webhook-signature on its own and
// reports, per secret, whether exactly one signature verifies under it.
func verifyEach(t *testing.T, got received, secrets ...vault.Plaintext) []bool {
	t.Helper()
	sigs := strings.Fields(got.Header.Get("webhook-signature"))
	out := make([]bool, len(secrets))
	for i, s := range secrets {
		n := 0
		for _, sig := range sigs {
			h := got.Header.Clone()
			h.Set("webhook-signature", sig)
			if verifyStandardWebhook(string(s.Bytes()), h, got.Body) {
				n++
			}
		}
		out[i] = n == 1
	}
	return out
}

// TestSigningGrace: a rotation with a grace period signs under the new and
// the previous signing secret; without one, or once a later rotation ends
// it, only the current secret signs.
func TestSigningGrace(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.queue("q", dispatch.QueueSpec{})
	h.start()
	deliver := func() received {
		j := h.enqueue("q", `{"n":1}`)
		h.waitJob(j.ID, "delivered", func(j storage.Job) bool { return j.Status == storage.JobDelivered })
		return h.last()
	}
	old := h.creds.SigningSecret
	next, err := h.ve.Vault.RotateCallback(ctx, h.ve.Operator, vault.RotateCallbackRequest{Grace: time.Hour, Only: vault.RotateSigning})
	if err != nil {
		t.Fatal(err)
	}
	got := deliver()
	if n := len(strings.Fields(got.Header.Get("webhook-signature"))); n != 2 {
		t.Fatalf("%d signatures during the grace, want 2: %q", n, got.Header.Get("webhook-signature"))
	}
	if ok := verifyEach(t, got, next.SigningSecret, old); !ok[0] || !ok[1] {
		t.Fatalf("during the grace: new verifies %v, previous verifies %v", ok[0], ok[1])
	}
	if !strings.HasPrefix(got.Header.Get("Authorization"), "Bearer ") || got.Header.Get("Authorization") != "Bearer "+string(h.creds.CallbackSecret.Bytes()) {
		t.Fatal("a signing-only rotation changed the callback secret")
	}
	// A rotation without grace ends the earlier one at once.
	last, err := h.ve.Vault.RotateCallback(ctx, h.ve.Operator, vault.RotateCallbackRequest{Grace: 0, Only: vault.RotateSigning})
	if err != nil {
		t.Fatal(err)
	}
	got = deliver()
	if ok := verifyEach(t, got, last.SigningSecret, next.SigningSecret, old); !ok[0] || ok[1] || ok[2] {
		t.Fatalf("after a no-grace rotation: current %v, previous %v, oldest %v (%q)", ok[0], ok[1], ok[2], got.Header.Get("webhook-signature"))
	}
	// Canary: no signing secret (current, previous with its grace, or
	// older) in the database file, the audit rows or the logs.
	h.stop()
	h.ve.Vault.FlushAudit(ctx)
	page, _ := h.ve.Store.ListAudit(ctx, storage.AuditQuery{WorkspaceID: h.ve.Operator.WorkspaceID, Limit: 1000})
	rows, _ := json.Marshal(page.Events)
	db, _ := os.ReadFile(h.ve.DBPath)
	for _, sec := range []vault.Plaintext{old, next.SigningSecret, last.SigningSecret} {
		v := string(sec.Bytes())
		leakcheck.Scan(t, strings.TrimPrefix(v, "whsec_"), map[string][]byte{"bbolt file": db, "audit rows": rows, "logs": []byte(h.ve.Logs.String())})
	}
}
