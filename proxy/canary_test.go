package proxy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"

	"rotor.sh/rotor/internal/leakcheck"
	"rotor.sh/rotor/storage"
)

// TestCanaryAcrossProxy: a random value used in the URL, a header and the
// body, echoed back by the upstream, refused in a header-injection attempt,
// rotated: it never appears in the proxy's logs, metrics, audit rows,
// error responses, the responses the worker gets, or the bbolt file.
func TestCanaryAcrossProxy(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	b := make([]byte, 24)
	rand.Read(b)
	value := "cn/" + base64.StdEncoding.EncodeToString(b) + "&q=1"
	e.secret("CANARY", value)
	e.secret("CANARY_CRLF", value+"\r\nX-Evil: 1")
	up.respond = func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("X-Echo", r.Header.Get("X-Key"))
		w.WriteHeader(500)
		fmt.Fprintf(w, "bad key %s in %s (%s)", r.Header.Get("X-Key"), r.URL.RawQuery, body)
	}
	c := e.client(e.key, nil)
	var responses bytes.Buffer
	record := func(r result) {
		responses.WriteString(r.body)
		for k, v := range r.header {
			fmt.Fprintf(&responses, "%s: %s\n", k, v)
		}
	}
	record(e.send(c, "POST", up.URL+"/p/${{%20secrets.CANARY%20}}?k=${{%20secrets.CANARY%20}}", "application/json", `{"k":"${{ secrets.CANARY }}"}`, "X-Key", "${{ secrets.CANARY }}"))
	record(e.send(c, "GET", up.URL+"/x", "", "", "X-Key", "${{ secrets.CANARY_CRLF }}"))
	record(e.send(c, "GET", up.URL+"/x", "", "", "X-Key", "${{ secrets.CANARY }}", "X-Other", "${{ secrets.MISSING }}"))
	record(e.send(c, "POST", up.URL+"/x", "application/json", `{"k": ${{ secrets.CANARY }}}`))
	if up.count() != 1 {
		t.Fatalf("upstream calls = %d, want 1", up.count())
	}
	if up.last(t).Header.Get("X-Key") != value {
		t.Fatal("the upstream did not get the value: the scan would prove nothing")
	}
	if err := e.vault.FlushAudit(context.Background()); err != nil {
		t.Fatal(err)
	}
	page, _ := e.store.ListAudit(context.Background(), storage.AuditQuery{WorkspaceID: e.op.WorkspaceID, Limit: 1000})
	rows, _ := json.Marshal(page.Events)
	var metrics bytes.Buffer
	mfs, _ := e.reg.Gather()
	for _, mf := range mfs {
		expfmt.MetricFamilyToText(&metrics, mf)
	}
	db, _ := os.ReadFile(e.db)
	blobs := map[string][]byte{
		"proxy responses": responses.Bytes(),
		"logs":            []byte(e.logs.String()),
		"metrics":         metrics.Bytes(),
		"audit rows":      rows,
		"bbolt file":      db,
	}
	leakcheck.Scan(t, value, blobs)
	if !strings.Contains(metrics.String(), "rotor_proxy_requests_total") || !strings.Contains(e.logs.String(), "proxy request") {
		t.Fatal("nothing captured to scan")
	}
}
