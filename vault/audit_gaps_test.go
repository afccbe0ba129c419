package vault

import (
	"strings"
	"testing"
)

// Columns the other tamper cases never edit alone: an audit row's output
// and resource_type, changed directly in PostgreSQL, break the chain at
// that row.
func TestAuditChainCatchesOutputAndResourceType(t *testing.T) {
	for _, c := range []struct{ name, sql string }{
		{"EditedOutput", `UPDATE audit_event SET output='{"version":99}' WHERE id=$1`},
		{"AddedOutput", `UPDATE audit_event SET output=coalesce(output, '{}'::jsonb) || '{"note":"x"}'::jsonb WHERE id=$1`},
		{"EditedResourceType", `UPDATE audit_event SET resource_type='workspace' WHERE id=$1`},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newChainEnv(t)
			if res := e.verify(t); !res.OK {
				t.Fatalf("before tampering: %+v", res)
			}
			target := e.ids[4]
			e.exec(t, c.sql, target)
			res := e.verify(t)
			if res.OK || res.FirstBadID != target || !strings.Contains(res.Problem, "edited") {
				t.Fatalf("verify = %+v, want first bad row %d, edited", res, target)
			}
		})
	}
}
