package api

import (
	"net/http"

	"rotor.sh/rotor/vault"
	"rotor.sh/rotor/workflow"
)

// referenceJSON is one place that uses a secret.
type referenceJSON struct {
	Kind string `json:"kind"` // "queue" or "workflow"
	Name string `json:"name"`
	// Steps are a workflow's step fields that reference the secret.
	Steps []workflow.SecretUse `json:"steps,omitempty"`
}

// secretReferences lists what references a secret, read-only: the queues
// whose templates use it (they block deleting it) and the workflows whose
// steps do. The dashboard's secret page shows the same.
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
	if s.workflows != nil {
		flows, err := s.workflows.WorkflowsReferencing(r.Context(), actor.WorkspaceID, name)
		if err != nil {
			return err
		}
		for _, f := range flows {
			out = append(out, referenceJSON{Kind: "workflow", Name: f.Workflow, Steps: f.Uses})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"references": out})
	return nil
}
