package api_test

import "testing"

// TestRevokeRespectsRoleOrder: an admin key must not revoke an operator
// key (it could lock everyone out of workspace creation and keyring
// rotation), a member revokes nothing, and the last operator key stays.
func TestRevokeRespectsRoleOrder(t *testing.T) {
	e := newEnv(t)
	opID, _ := e.newKey("operator")
	adminID, admin := e.newKey("admin")
	admin2ID, _ := e.newKey("admin")
	memberID, member := e.newKey("member")

	if code := e.mustStatus(e.do("DELETE", "/v1/keys/"+opID, admin, ""), 403).errCode(t); code != "forbidden" {
		t.Fatalf("admin revoking an operator key: code %q", code)
	}
	e.mustStatus(e.do("DELETE", "/v1/keys/"+adminID, member, ""), 403)
	// Same rank is allowed; lower rank too.
	e.mustStatus(e.do("DELETE", "/v1/keys/"+admin2ID, admin, ""), 204)
	e.mustStatus(e.do("DELETE", "/v1/keys/"+memberID, admin, ""), 204)
	// An operator may revoke another operator key while one remains.
	e.mustStatus(e.do("DELETE", "/v1/keys/"+opID, e.key, ""), 204)
	// e.key is now the last operator key of the deployment: refused with 409.
	self := e.mustStatus(e.do("GET", "/v1/keys", e.key, ""), 200).json(t)
	var lastID string
	for _, k := range self["keys"].([]any) {
		m := k.(map[string]any)
		if m["role"] == "operator" && m["revoked_at"] == nil {
			lastID = m["id"].(string)
		}
	}
	if lastID == "" {
		t.Fatal("no active operator key listed")
	}
	if code := e.mustStatus(e.do("DELETE", "/v1/keys/"+lastID, e.key, ""), 409).errCode(t); code != "conflict" {
		t.Fatalf("revoking the last operator key: code %q", code)
	}
	// Still works afterwards.
	e.mustStatus(e.do("GET", "/v1/keys", e.key, ""), 200)
}
