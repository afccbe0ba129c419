package api

import (
	"net/http"
	"time"

	"rotor.sh/rotor/vault"
)

// callbackJSON is the metadata of the workspace's callback credentials.
type callbackJSON struct {
	AllowedHosts      []string   `json:"allowed_hosts"`
	UpdatedAt         time.Time  `json:"updated_at"`
	SigningGraceUntil *time.Time `json:"signing_grace_until"`
}

func toCallbackJSON(c vault.CallbackSettings) callbackJSON {
	out := callbackJSON{AllowedHosts: c.AllowedHosts, UpdatedAt: c.UpdatedAt}
	if !c.SigningGraceUntil.IsZero() {
		t := c.SigningGraceUntil.UTC()
		out.SigningGraceUntil = &t
	}
	return out
}

func (s *Server) getCallbackSettings(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	c, err := s.vault.CallbackSettings(r.Context(), actor)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toCallbackJSON(c))
	return nil
}

type callbackPatchBody struct {
	AllowedHosts *[]string `json:"allowed_hosts"`
}

func (s *Server) patchCallbackSettings(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	var body callbackPatchBody
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	if body.AllowedHosts == nil {
		return badRequest(CodeInvalidArgument, `field "allowed_hosts" is required`)
	}
	c, err := s.vault.SetCallbackAllowedHosts(r.Context(), actor, *body.AllowedHosts)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toCallbackJSON(c))
	return nil
}

// rotateCallbackBody is the optional body of POST /v1/workspace/callback-secret.
type rotateCallbackBody struct {
	// Grace is a Go duration ("24h", "0s"); vault.DefaultSigningGrace when absent.
	Grace *string `json:"grace"`
	// Only is "signing" or "callback"; both when absent.
	Only string `json:"only"`
}

func (s *Server) rotateCallbackSecret(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	var body rotateCallbackBody
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &body); err != nil {
			return err
		}
	}
	req := vault.RotateCallbackRequest{Grace: vault.DefaultSigningGrace, Only: body.Only}
	if body.Grace != nil {
		d, err := time.ParseDuration(*body.Grace)
		if err != nil {
			return badRequest(CodeInvalidArgument, `field "grace" must be a duration such as "24h", "30m" or "0s"`)
		}
		req.Grace = d
	}
	creds, err := s.vault.RotateCallback(r.Context(), actor, req)
	if err != nil {
		return err
	}
	out := map[string]any{}
	if b := creds.CallbackSecret.Bytes(); len(b) > 0 {
		out["callback_secret"] = string(b)
	}
	if b := creds.SigningSecret.Bytes(); len(b) > 0 {
		out["signing_secret"] = string(b)
		out["signing_grace_seconds"] = int64(req.Grace.Seconds())
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
