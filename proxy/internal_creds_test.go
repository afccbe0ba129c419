package proxy_test

import (
	"context"
	"strings"
	"testing"

	"rotor.sh/rotor/proxy"
	"rotor.sh/rotor/vault"
)

// TestInternalCredentialsOnlyWhenAsked: a dispatch request gets the
// callback secret as Authorization only with Rotor-Internal-Auth: callback,
// and a Standard Webhooks signature only with Rotor-Internal-Sign; without
// them the dispatcher's own requests carry neither (issue 13: flipping
// either check survived the package's tests).
func TestInternalCredentialsOnlyWhenAsked(t *testing.T) {
	e := newEnv(t, func(o *proxy.Options) { o.InternalToken = "the-internal-token" })
	ctx := context.Background()
	up := newUpstream(t, false)
	host := strings.TrimPrefix(up.URL, "http://")
	cs, err := e.vault.CallbackSecret(ctx, vault.CredentialRequest{WorkspaceID: e.op.WorkspaceID, Host: strings.Split(host, ":")[0], Scheme: "http"})
	if err != nil {
		t.Fatal(err)
	}
	disp := e.client("", nil)
	base := []string{"Proxy-Authorization", "Bearer the-internal-token", proxy.HeaderInternalWorkspace, e.op.WorkspaceID,
		proxy.HeaderInternalJob, "job_1", proxy.HeaderInternalAttempt, "1", "webhook-id", "msg_1", "webhook-timestamp", "1700000000"}
	for _, tc := range []struct {
		name       string
		headers    []string
		auth, sign bool
	}{
		{"neither", nil, false, false},
		{"callback", []string{proxy.HeaderInternalAuth, "callback"}, true, false},
		{"sign", []string{proxy.HeaderInternalSign, "standard-webhooks"}, false, true},
		{"both", []string{proxy.HeaderInternalAuth, "callback", proxy.HeaderInternalSign, "standard-webhooks"}, true, true},
	} {
		r := e.send(disp, "POST", up.URL+"/cb", "application/json", `{"ok":true}`, append(append([]string{}, base...), tc.headers...)...)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", tc.name, r.status, r.body)
		}
		got := up.last(t)
		if a := got.Header.Get("Authorization"); (a == "Bearer "+string(cs.Bytes())) != tc.auth || !tc.auth && a != "" {
			t.Errorf("%s: Authorization present=%v, want %v", tc.name, a != "", tc.auth)
		}
		if s := got.Header.Get("webhook-signature"); strings.HasPrefix(s, "v1,") != tc.sign || !tc.sign && s != "" {
			t.Errorf("%s: webhook-signature %q, want present=%v", tc.name, s, tc.sign)
		}
	}
}
