package api_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"rotor.sh/rotor/api"
	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/vault/vaulttest"
)

// FuzzRequestBodies: any body sent to the JSON endpoints gets a 2xx or a
// 4xx with a JSON error, never a 5xx or a panic.
func FuzzRequestBodies(f *testing.F) {
	for _, s := range []string{`{"name":"A","value":"v"}`, `{"name":`, `[]`, `null`, `{"value":"\ud800"}`, "{\"name\":\"A\",\"value\":\"\xff\"}",
		`{"allowed_hosts":["*.a.b"],"value":"x"}`, `{"callback_url":"https://x/${{ secrets.A }}","name":"q"}`, `{"payload":{"a":[1,{"b":null}]}}`} {
		for path := range 4 {
			f.Add(s, uint8(path))
		}
	}
	ve := vaulttest.New(f)
	ve.Secret(f, "A", "value-a")
	srv := api.New(api.Options{Vault: ve.Vault, Queues: dispatch.NewService(ve.Store, ve.Vault, nil, nil)})
	targets := []struct{ method, path string }{
		{"POST", "/v1/secrets"}, {"PATCH", "/v1/secrets/A"}, {"POST", "/v1/queues"}, {"POST", "/v1/queues/q/jobs"},
	}
	f.Fuzz(func(t *testing.T, body string, which uint8) {
		tg := targets[int(which)%len(targets)]
		req := httptest.NewRequest(tg.method, tg.path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+ve.Key)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s with %q: %d %s", tg.method, tg.path, body, rec.Code, rec.Body.String())
		}
		if rec.Code >= 400 && !strings.Contains(rec.Body.String(), `"error"`) {
			t.Fatalf("error without a JSON body: %d %s", rec.Code, rec.Body.String())
		}
	})
}
