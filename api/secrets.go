package api

import (
	"net/http"
	"time"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
)

// secretJSON is a secret as the API shows it: metadata and hint, never the value.
type secretJSON struct {
	Name         string    `json:"name"`
	ValueHint    string    `json:"value_hint"`
	Version      int64     `json:"version"`
	AllowedHosts []string  `json:"allowed_hosts"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

func toSecretJSON(m storage.SecretMeta) secretJSON {
	hosts := m.AllowedHosts
	if hosts == nil {
		hosts = []string{}
	}
	return secretJSON{Name: m.Name, ValueHint: m.Hint, Version: m.Version, AllowedHosts: hosts, CreatedAt: m.CreatedAt, UpdatedAt: m.UpdatedAt}
}

type createSecretBody struct {
	Name         *string  `json:"name"`
	Value        *string  `json:"value"`
	AllowedHosts []string `json:"allowed_hosts"`
}

func (s *Server) createSecret(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	var body createSecretBody
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	if body.Name == nil {
		return badRequest(CodeInvalidName, `field "name" is required`)
	}
	if body.Value == nil {
		return badRequest(CodeInvalidValue, `field "value" is required`)
	}
	meta, err := s.vault.CreateSecret(r.Context(), actor, vault.CreateSecretRequest{
		Name: *body.Name, Value: vault.PlaintextString(*body.Value), AllowedHosts: body.AllowedHosts,
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/secrets/"+meta.Name)
	writeJSON(w, http.StatusCreated, toSecretJSON(meta))
	return nil
}

func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	metas, err := s.vault.ListSecrets(r.Context(), actor)
	if err != nil {
		return err
	}
	out := make([]secretJSON, 0, len(metas))
	for _, m := range metas {
		out = append(out, toSecretJSON(m))
	}
	writeJSON(w, http.StatusOK, map[string]any{"secrets": out})
	return nil
}

func (s *Server) getSecret(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	meta, err := s.vault.GetSecret(r.Context(), actor, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toSecretJSON(meta))
	return nil
}

type updateSecretBody struct {
	Value *string `json:"value"`
	// A present allowed_hosts replaces the list; [] or null clears it.
	AllowedHosts optionalHosts `json:"allowed_hosts"`
}

// optionalHosts tells an absent field from an explicit null.
type optionalHosts struct {
	set   bool
	hosts []string
}

func (o *optionalHosts) UnmarshalJSON(b []byte) error {
	o.set = true
	if string(b) == "null" {
		return nil
	}
	return jsonUnmarshal(b, &o.hosts)
}

func (s *Server) updateSecret(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	var body updateSecretBody
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	req := vault.UpdateSecretRequest{Name: r.PathValue("name")}
	if body.Value != nil {
		v := vault.PlaintextString(*body.Value)
		req.Value = &v
	}
	if body.AllowedHosts.set {
		req.AllowedHosts = &body.AllowedHosts.hosts
	}
	meta, err := s.vault.UpdateSecret(r.Context(), actor, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toSecretJSON(meta))
	return nil
}

func (s *Server) deleteSecret(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	name := r.PathValue("name")
	force := r.URL.Query().Get("force")
	if force != "" && force != "true" && force != "false" {
		return badRequest(CodeInvalidQuery, "force must be true or false")
	}
	if force != "true" {
		inUse := &dispatch.SecretInUseError{Secret: name}
		if s.queues != nil {
			users, err := s.queues.QueuesReferencing(r.Context(), actor.WorkspaceID, name)
			if err != nil {
				return err
			}
			inUse.Queues = users
		}
		if s.workflows != nil {
			refs, err := s.workflows.WorkflowsReferencing(r.Context(), actor.WorkspaceID, name)
			if err != nil {
				return err
			}
			for _, ref := range refs {
				inUse.Workflows = append(inUse.Workflows, ref.Workflow)
			}
		}
		if len(inUse.Queues)+len(inUse.Workflows) > 0 {
			return inUse
		}
	}
	if err := s.vault.DeleteSecret(r.Context(), actor, name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
