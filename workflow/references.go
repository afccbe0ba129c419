package workflow

import (
	"context"
	"encoding/json"
	"strings"
)

// SecretUse is one field of a workflow step that references a secret.
type SecretUse struct {
	Step  string `json:"step"`
	Field string `json:"field"` // url, headers.NAME or body
}

// SecretUses lists the fields of def's request steps that reference
// secret, in step order. It reads the stored definition as written (the
// references, never values); a definition that no longer parses has none.
func SecretUses(def json.RawMessage, secret string) []SecretUse {
	d, err := ParseDefinition(def)
	if err != nil {
		return nil
	}
	p, err := compile(d)
	if err != nil {
		return nil
	}
	var out []SecretUse
	for _, r := range p.secretRefs() {
		if r.name != secret {
			continue
		}
		// r.field is "steps[i] (ID).request.FIELD".
		_, rest, _ := strings.Cut(r.field, " (")
		id, field, _ := strings.Cut(rest, ").request.")
		if n := len(out); n > 0 && out[n-1].Step == id && out[n-1].Field == field {
			continue
		}
		out = append(out, SecretUse{Step: id, Field: field})
	}
	return out
}

// WorkflowReference is a workflow whose steps reference a secret.
type WorkflowReference struct {
	Workflow string
	Uses     []SecretUse
}

// WorkflowsReferencing lists the workspace's workflows whose current
// version references secret, by name.
func (s *Service) WorkflowsReferencing(ctx context.Context, workspaceID, secret string) ([]WorkflowReference, error) {
	ws, err := s.store.ListWorkflows(ctx, workspaceID)
	if err != nil {
		return nil, err
	}
	var out []WorkflowReference
	for _, w := range ws {
		if uses := SecretUses(w.Definition, secret); len(uses) > 0 {
			out = append(out, WorkflowReference{Workflow: w.Name, Uses: uses})
		}
	}
	return out, nil
}
