package api

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"rotor.sh/rotor/vault"
)

// TestAuditUnavailableIs503: a request refused because its access row
// cannot be queued answers 503 with the code in the body and in
// X-Rotor-Error (as the proxy does), never 500.
func TestAuditUnavailableIs503(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler)}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/v1/x", nil)
	s.writeError(rec, req, fmt.Errorf("%w: 12 rows waiting", vault.ErrAuditUnavailable))
	var body errorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusServiceUnavailable || body.Error.Code != CodeAuditUnavailable || rec.Header().Get(HeaderError) != CodeAuditUnavailable {
		t.Fatalf("got %d %s %q", rec.Code, rec.Body, rec.Header().Get(HeaderError))
	}
}
