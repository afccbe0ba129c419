package api

import (
	"net/http"

	"rotor.sh/rotor/vault"
)

// referenceJSON is one place that uses a secret.
type referenceJSON struct {
	Kind string `json:"kind"` // "queue"; other kinds (workflows) add theirs here
	Name string `json:"name"`
}

// secretReferences lists what references a secret (what blocks deleting
// it), read-only: the dashboard's secret page shows the same.
func (s *Server) secretReferences(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	name := r.PathValue("name")
	if _, err := s.vault.GetSecret(r.Context(), actor, name); err != nil {
		return err
	}
	users, err := s.queues.QueuesReferencing(r.Context(), actor.WorkspaceID, name)
	if err != nil {
		return err
	}
	out := make([]referenceJSON, 0, len(users))
	for _, q := range users {
		out = append(out, referenceJSON{Kind: "queue", Name: q})
	}
	writeJSON(w, http.StatusOK, map[string]any{"references": out})
	return nil
}
