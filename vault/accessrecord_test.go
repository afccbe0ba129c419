package vault

import (
	"context"
	"errors"
	"testing"

	"rotor.sh/rotor/storage"
)

// TestAccessRowContent pins the access rows users read (GET /v1/audit,
// export, verify) byte for byte: encoding moved from the request path to the
// writer (issue 15), the rows must not change. It passes on the build
// before that move too.
func TestAccessRowContent(t *testing.T) {
	ctx := context.Background()
	v, _ := testVault(t)
	a := bootstrap(t, v)
	if _, err := v.CreateSecret(ctx, a, CreateSecretRequest{Name: "TOKEN", Value: PlaintextString("value-0123456789"), AllowedHosts: []string{"api.example.com"}}); err != nil {
		t.Fatal(err)
	}
	extra := map[string]string{"job_id": "job_<1>", "attempt": "2"}
	req := ResolveRequest{WorkspaceID: a.WorkspaceID, Name: "TOKEN", ActorID: a.KeyID, Host: "api.example.com", RequestID: "req_1", Extra: extra}
	if _, err := v.Resolve(ctx, req); err != nil {
		t.Fatal(err)
	}
	req.Host, req.RequestID, req.Extra = "evil.example", "", nil
	if _, err := v.Resolve(ctx, req); !errors.Is(err, ErrHostNotAllowed) {
		t.Fatalf("resolve for another host: %v", err)
	}
	if err := v.RecordDenied(ctx, DeniedDelivery{WorkspaceID: a.WorkspaceID, ActorID: a.KeyID, Names: []string{"TOKEN"}, Host: "10.0.0.1", RequestID: "req_2", Reason: DenyDestinationBlocked}); err != nil {
		t.Fatal(err)
	}
	if err := v.FlushAudit(ctx); err != nil {
		t.Fatal(err)
	}
	page, err := v.ListAudit(ctx, a, storage.AuditQuery{ResourceID: "TOKEN", Limit: 3})
	if err != nil || len(page.Events) != 3 {
		t.Fatalf("%d rows, %v", len(page.Events), err)
	}
	want := []struct{ typ, in, out string }{
		{EventSecretAccessDenied, `{"host":"10.0.0.1","request_id":"req_2"}`, `{"reason":"destination_blocked"}`},
		{EventSecretAccessDenied, `{"host":"evil.example"}`, `{"reason":"host_not_allowed","version":1}`},
		{EventSecretAccessed, `{"host":"api.example.com","request_id":"req_1","attempt":"2","job_id":"job_\u003c1\u003e"}`, `{"version":1}`},
	}
	for i, w := range want {
		e := page.Events[i]
		if e.EventType != w.typ || string(e.Input) != w.in || string(e.Output) != w.out || e.ActorID != a.KeyID || e.ResourceType != ResourceSecret || e.OccurredAt.IsZero() || e.OccurredAt.Location().String() != "UTC" {
			t.Errorf("row %d = %s %s %s (actor %s, %s at %v), want %s %s %s", i, e.EventType, e.Input, e.Output, e.ActorID, e.ResourceType, e.OccurredAt, w.typ, w.in, w.out)
		}
	}
}
