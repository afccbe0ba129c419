package api

import (
	"net/http"
	"time"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
)

type apiKeyJSON struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at"`
	// Key is set only in the response that creates it.
	Key string `json:"key,omitempty"`
}

func toKeyJSON(k storage.APIKey) apiKeyJSON {
	return apiKeyJSON{ID: k.ID, Name: k.Name, Role: k.Role, CreatedAt: k.CreatedAt, RevokedAt: k.RevokedAt}
}

type createKeyBody struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	var body createKeyBody
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	rec, key, err := s.vault.CreateAPIKey(r.Context(), actor, vault.CreateAPIKeyRequest{Name: body.Name, Role: body.Role})
	if err != nil {
		return err
	}
	out := toKeyJSON(rec)
	out.Key = key
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	keys, err := s.vault.ListAPIKeys(r.Context(), actor)
	if err != nil {
		return err
	}
	out := make([]apiKeyJSON, 0, len(keys))
	for _, k := range keys {
		out = append(out, toKeyJSON(k))
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": out})
	return nil
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	if err := s.vault.RevokeAPIKey(r.Context(), actor, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type workspaceJSON struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

func (s *Server) getWorkspace(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	ws, err := s.vault.Workspace(r.Context(), actor)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, workspaceJSON{ID: ws.ID, Name: ws.Name, CreatedAt: ws.CreatedAt})
	return nil
}

type createWorkspaceBody struct {
	Name string `json:"name"`
}

func (s *Server) createWorkspace(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	var body createWorkspaceBody
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	nw, err := s.vault.CreateWorkspace(r.Context(), actor, body.Name)
	if err != nil {
		return err
	}
	k := toKeyJSON(nw.AdminKey)
	k.Key = nw.Key
	ws := nw.Workspace
	writeJSON(w, http.StatusCreated, map[string]any{
		"workspace":       workspaceJSON{ID: ws.ID, Name: ws.Name, CreatedAt: ws.CreatedAt},
		"admin_key":       k,
		"callback_secret": string(nw.Callback.CallbackSecret.Bytes()),
		"signing_secret":  string(nw.Callback.SigningSecret.Bytes()),
	})
	return nil
}

func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	res, err := s.vault.RotateKEK(r.Context(), actor)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
