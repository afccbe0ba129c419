package vault

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

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

// TestEventInSameRows: the writer's eventIn (rows carved from an arena,
// input and output shared with the previous row when equal) gives every
// row exactly the bytes event gives it alone, whatever the sequence, and
// no row's slices can be appended into the next row's bytes.
func TestEventInSameRows(t *testing.T) {
	long := strings.Repeat("h<&>\u2028é\xff", 3000) // past a chunk's room estimate per byte
	recs := []accessRecord{
		{ws: "w", actor: "a", eventType: EventSecretAccessed, name: "A", host: "api.example.com", requestID: "req_1", version: 1, hasVersion: true},
		{ws: "w", actor: "a", eventType: EventSecretAccessed, name: "B", host: "api.example.com", requestID: "req_1", version: 1, hasVersion: true},
		{ws: "w", actor: "a", eventType: EventSecretAccessed, name: "B", host: "api.example.com", requestID: "req_2", version: 2, hasVersion: true},
		{ws: "w", actor: "a", eventType: EventSecretAccessDenied, name: "B", host: "api.example.com", requestID: "req_2", reason: denyHost},
		{ws: "w", actor: "a", eventType: EventSecretAccessed, name: "C", host: "api.example.com", requestID: "req_2", extra: map[string]string{"job_id": "j1"}, version: 2, hasVersion: true},
		{ws: "w", actor: "a", eventType: EventSecretAccessed, name: "D", host: "api.example.com", requestID: "req_2", extra: map[string]string{"job_id": "j2"}, version: 2, hasVersion: true},
		{ws: "w", actor: "a", eventType: EventSecretAccessed, name: "E", host: long, requestID: long, extra: map[string]string{long: long}, version: 2, hasVersion: true},
		{ws: "w", actor: "a", eventType: EventSecretAccessed, name: "F", host: "", version: 3, hasVersion: true},
	}
	var ar rowArena
	var prev prevRow
	s := newRowSigner([]byte("0123456789abcdef0123456789abcdef"))
	var got []storage.AuditEvent
	var ms macState
	for round := range 200 { // several chunks
		for i := range recs {
			e, canon := recs[i].eventIn(&ar, &prev)
			s.signIn(&e, nonceAccess, &ar, &ms, canon)
			if round == 0 || i == len(recs)-1 {
				got = append(got, e)
			}
		}
	}
	for _, e := range got {
		for _, b := range [][]byte{e.Input, e.Output, e.Nonce, e.MAC} {
			if len(b) != cap(b) {
				t.Fatalf("row %s: a slice of len %d has cap %d", e.ResourceID, len(b), cap(b))
			}
		}
	}
	for i, e := range got[:len(recs)] {
		want := recs[i].event()
		if string(e.Input) != string(want.Input) || string(e.Output) != string(want.Output) || e.ResourceID != want.ResourceID || e.EventType != want.EventType {
			t.Fatalf("row %d: %.80s %s, want %.80s %s", i, e.Input, e.Output, want.Input, want.Output)
		}
		if !bytes.Equal(e.MAC, rowMAC(s.key, e)) {
			t.Fatalf("row %d: MAC does not verify", i)
		}
	}
}

// FuzzCanonAccessJSON: a row eventIn calls canon has an input and output
// that are their own sorted form, so the writer's MAC (hashing them as
// they are) is the MAC every verifier computes (rowMAC sorts them).
func FuzzCanonAccessJSON(f *testing.F) {
	f.Add("api.example.com", "prx_0123456789abcdef", "", int64(3), true, "")
	f.Add("h<&>", "r\x7f", "host_not_allowed", int64(-1), false, "job_id")
	f.Add("", "", "", int64(0), false, "")
	f.Add("a\"b", "é", "x\\y", int64(1), true, "")
	s := newRowSigner([]byte("0123456789abcdef0123456789abcdef"))
	f.Fuzz(func(t *testing.T, host, requestID, reason string, version int64, hasVersion bool, extraKey string) {
		r := accessRecord{ws: "w", actor: "a", eventType: EventSecretAccessed, name: "N", host: host, requestID: requestID,
			reason: reason, version: version, hasVersion: hasVersion}
		if extraKey != "" {
			r.extra = map[string]string{extraKey: host}
		}
		var ar rowArena
		var ms macState
		var prev prevRow
		// The row alone, then it again through prev, then the request's
		// next row (another secret), which shares the first's input.
		second := r
		second.name, second.version = "M", version+1
		for i, row := range []struct {
			r    accessRecord
			last *prevRow
		}{{r, nil}, {r, &prev}, {second, &prev}} {
			e, canon := row.r.eventIn(&ar, row.last)
			in := accessInputIn(nil, host, requestID, row.r.extra)
			if want := in.Bytes(); !bytes.Equal(e.Input, want) {
				t.Fatalf("row %d: input %q, jsonx writes %q", i, e.Input, want)
			}
			if canon {
				if got := appendSortedJSON(nil, e.Input); !bytes.Equal(got, e.Input) {
					t.Fatalf("row %d: canon input %q sorts to %q", i, e.Input, got)
				}
				if got := appendSortedJSON(nil, e.Output); !bytes.Equal(got, e.Output) {
					t.Fatalf("row %d: canon output %q sorts to %q", i, e.Output, got)
				}
				if got := sortedJSON(e.Input); !bytes.Equal(got, e.Input) {
					t.Fatalf("row %d: canon input %q re-encodes to %q", i, e.Input, got)
				}
			}
			s.signIn(&e, nonceAccess, &ar, &ms, canon)
			if !bytes.Equal(e.MAC, rowMAC(s.key, e)) {
				t.Fatalf("row %d, canon=%v: the writer's MAC differs from rowMAC's for %q %q", i, canon, e.Input, e.Output)
			}
		}
	})
}

// TestProxyRowsCanon: the proxy's rows (no extra keys, plain host and
// request id) take the writer's canonical MAC path; a dispatch row (extra
// keys, which may sort before "host") and a host to escape do not.
func TestProxyRowsCanon(t *testing.T) {
	for _, c := range []struct {
		r    accessRecord
		want bool
	}{
		{accessRecord{host: "api.example.com", requestID: "prx_0123456789abcdef", version: 3, hasVersion: true}, true},
		{accessRecord{host: "api.example.com", requestID: "prx_0123456789abcdef", reason: denyHost}, true},
		{accessRecord{host: "api.example.com", requestID: "prx_1", extra: map[string]string{"attempt": "1"}}, false},
		{accessRecord{host: "a<b", requestID: "prx_1"}, false},
	} {
		if _, got := c.r.eventIn(nil, nil); got != c.want {
			t.Errorf("%+v: canon %v, want %v", c.r, got, c.want)
		}
	}
}

// TestResolutionsCounted: cache hits are counted by the audit writer as it
// takes their rows (accessRecord.hit), misses and denials by Resolve; once
// the rows are written every resolution is in
// rotor_vault_resolutions_total, each under one result.
func TestResolutionsCounted(t *testing.T) {
	ctx := context.Background()
	v, _ := testVault(t)
	a := bootstrap(t, v)
	if _, err := v.CreateSecret(ctx, a, CreateSecretRequest{Name: "TOKEN", Value: PlaintextString("counted-value-0046"), AllowedHosts: []string{"api.example.com"}}); err != nil {
		t.Fatal(err)
	}
	req := ResolveRequest{WorkspaceID: a.WorkspaceID, Name: "TOKEN", ActorID: a.KeyID, Host: "api.example.com"}
	v.Invalidate(a.WorkspaceID, "TOKEN")
	for range 5 { // one miss, four hits
		if _, err := v.Resolve(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	denied := req
	denied.Host = "evil.example"
	if _, err := v.Resolve(ctx, denied); !errors.Is(err, ErrHostNotAllowed) { // a hit, denied
		t.Fatalf("resolve for another host: %v", err)
	}
	if err := v.FlushAudit(ctx); err != nil {
		t.Fatal(err)
	}
	for result, want := range map[string]float64{resultHit: 4, resultMiss: 1, resultDenied: 1} {
		if got := testutil.ToFloat64(v.metrics.resolutions.WithLabelValues(result)); got != want {
			t.Errorf("resolutions{result=%q} = %v, want %v", result, got, want)
		}
	}
}
