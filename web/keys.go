package web

import (
	"errors"
	"strings"
	"time"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
)

type keysData struct {
	Keys []storage.APIKey
	// Created is the key just created, shown once in this response only.
	Created *createdKey
	Self    string
	// Operator may create operator keys.
	Operator bool
	Form     struct{ Name, Role string }
}

type createdKey struct{ Name, Role, Key string }

func (d *Dashboard) keysPage(q *req) { d.showKeys(q, keysData{}, nil) }

func (d *Dashboard) showKeys(q *req, data keysData, err error) {
	keys, lerr := d.vault.ListAPIKeys(q.r.Context(), q.actor)
	data.Keys, data.Self, data.Operator = keys, q.actor.KeyID, q.actor.Can(vault.RoleOperator)
	if err == nil {
		err = lerr
	}
	if err != nil {
		d.fail(q, "keys", data, err)
		return
	}
	d.render(q.w, q.r, "keys", q, data, nil)
}

// createKey shows the new key in its own response (never stored, never
// shown again: the page after a reload lists metadata only).
func (d *Dashboard) createKey(q *req) {
	f := q.r.PostForm
	name, role := strings.TrimSpace(f.Get("name")), f.Get("role")
	rec, key, err := d.vault.CreateAPIKey(q.r.Context(), q.actor, vault.CreateAPIKeyRequest{Name: name, Role: role})
	var data keysData
	data.Form.Name, data.Form.Role = name, role
	if err != nil {
		d.showKeys(q, data, err)
		return
	}
	data.Form.Name = ""
	data.Created = &createdKey{Name: rec.Name, Role: rec.Role, Key: key}
	d.showKeys(q, data, nil)
}

func (d *Dashboard) revokeKey(q *req) {
	id := q.r.PathValue("id")
	if q.r.PostForm.Get("confirm") != "yes" {
		d.showKeys(q, keysData{}, errors.New("tick the box to confirm revoking "+id))
		return
	}
	if err := d.vault.RevokeAPIKey(q.r.Context(), q.actor, id); err != nil {
		d.showKeys(q, keysData{}, err)
		return
	}
	q.back("/dashboard/settings/keys", "Revoked "+id)
}

// --- callback and signing secrets ---

type callbackData struct {
	Settings vault.CallbackSettings
	// New holds the rotated secrets, shown once in this response only.
	New *rotated
}

type rotated struct{ Callback, Signing, Grace string }

func (d *Dashboard) callbackPage(q *req) { d.showCallback(q, nil, nil) }

func (d *Dashboard) showCallback(q *req, nw *rotated, err error) {
	s, gerr := d.vault.CallbackSettings(q.r.Context(), q.actor)
	if err == nil {
		err = gerr
	}
	data := callbackData{Settings: s, New: nw}
	if err != nil {
		d.fail(q, "settings", data, err)
		return
	}
	d.render(q.w, q.r, "settings", q, data, nil)
}

func (d *Dashboard) callbackHosts(q *req) {
	hosts := splitHosts(q.r.PostForm.Get("hosts"))
	if hosts == nil {
		hosts = []string{}
	}
	if _, err := d.vault.SetCallbackAllowedHosts(q.r.Context(), q.actor, hosts); err != nil {
		d.showCallback(q, nil, err)
		return
	}
	q.back("/dashboard/settings/callback", "Saved the callback's allowed hosts")
}

// graces are the signing grace periods the form offers.
var graces = map[string]time.Duration{"0s": 0, "1h": time.Hour, "24h": 24 * time.Hour, "72h": 72 * time.Hour}

func (d *Dashboard) rotateCallback(q *req) {
	f := q.r.PostForm
	if f.Get("confirm") != "yes" {
		d.showCallback(q, nil, errors.New("tick the box to confirm the rotation"))
		return
	}
	grace, ok := graces[f.Get("grace")]
	if !ok {
		d.showCallback(q, nil, errors.New("choose a grace period from the list"))
		return
	}
	only := f.Get("only")
	if only != vault.RotateBoth && only != vault.RotateSigning && only != vault.RotateCallback {
		d.showCallback(q, nil, errors.New("choose which secret to rotate from the list"))
		return
	}
	creds, err := d.vault.RotateCallback(q.r.Context(), q.actor, vault.RotateCallbackRequest{Grace: grace, Only: only})
	if err != nil {
		d.showCallback(q, nil, err)
		return
	}
	nw := &rotated{Callback: string(creds.CallbackSecret.Bytes()), Signing: string(creds.SigningSecret.Bytes())}
	if grace > 0 {
		nw.Grace = roundDuration(grace)
	}
	d.showCallback(q, nw, nil)
}
