package proxy_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"

	"rotor.sh/rotor/proxy"
	"rotor.sh/rotor/vault"
)

// verifiesOver reports whether the Standard Webhooks signature h carries
// verifies under key over id.timestamp.body, as a stock verifier checks it.
func verifiesOver(t *testing.T, key vault.Plaintext, h map[string][]string, body []byte) bool {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(string(key.Bytes()), "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	get := func(k string) string {
		if vs := h[k]; len(vs) > 0 {
			return vs[0]
		}
		return ""
	}
	mac := hmac.New(sha256.New, raw)
	mac.Write([]byte(get("Webhook-Id") + "." + get("Webhook-Timestamp") + "."))
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, s := range strings.Fields(get("Webhook-Signature")) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return true
		}
	}
	return false
}

// TestSignedCompressedBody: a dispatch body sent compressed (a queue's
// callback_headers may set Content-Encoding) passes the rewrite untouched,
// and was signed as if it were empty: the receiver's verifier, which
// hashes the bytes it got, rejected every such delivery. The signature
// now covers exactly the bytes the callback receives; a compressed body
// too large to hold for signing is refused rather than sent mis-signed.
func TestSignedCompressedBody(t *testing.T) {
	e := newEnv(t, func(o *proxy.Options) { o.InternalToken = "the-internal-token" })
	up := newUpstream(t, false)
	host := strings.Split(strings.TrimPrefix(up.URL, "http://"), ":")[0]
	keys, err := e.vault.SigningSecrets(context.Background(), vault.CredentialRequest{WorkspaceID: e.op.WorkspaceID, Host: host, Scheme: "http"})
	if err != nil || len(keys) == 0 {
		t.Fatalf("signing secrets: %d, %v", len(keys), err)
	}
	disp := e.client("", nil)
	base := []string{"Proxy-Authorization", "Bearer the-internal-token", proxy.HeaderInternalWorkspace, e.op.WorkspaceID,
		proxy.HeaderInternalJob, "job_1", proxy.HeaderInternalAttempt, "1", proxy.HeaderInternalSign, "standard-webhooks",
		"webhook-id", "msg_1", "webhook-timestamp", "1700000000"}
	gz := func(s string) string {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		_, _ = w.Write([]byte(s))
		_ = w.Close()
		return b.String()
	}
	for _, tc := range []struct {
		name, body string
		hdr        []string
	}{
		{"identity", `{"ok":true}`, nil},
		{"gzip", gz(`{"ok":true}`), []string{"Content-Encoding", "gzip"}},
		{"deflate", "x\x9c\xab\xce\xcf\xb6*)*M\xad\x05\x00\x1d\xf0\x04\x9c", []string{"Content-Encoding", "deflate"}},
	} {
		r := e.send(disp, "POST", up.URL+"/cb", "application/json", tc.body, append(append([]string{}, base...), tc.hdr...)...)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", tc.name, r.status, r.body)
		}
		got := up.last(t)
		if string(got.Body) != tc.body {
			t.Fatalf("%s: the callback got %d bytes, the client sent %d", tc.name, len(got.Body), len(tc.body))
		}
		if !verifiesOver(t, keys[0], got.Header, got.Body) {
			t.Errorf("%s: the signature does not verify over the %d bytes the callback received", tc.name, len(got.Body))
		}
	}

	// Past BufferLimit: refused, never sent with a signature that lies.
	n := up.count()
	big := strings.Repeat("z", proxy.BufferLimit+1)
	r := e.send(disp, "POST", up.URL+"/cb", "application/json", big, append(append([]string{}, base...), "Content-Encoding", "gzip")...)
	refused(t, r, up, n, 400, proxy.CodeValueRefused)
}
