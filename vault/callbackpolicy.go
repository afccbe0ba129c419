package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"rotor.sh/rotor/storage"
)

// Signing-secret rotation grace: during it, dispatched requests carry a
// signature under the new and under the previous signing secret, so
// handlers can switch at their own pace (Standard Webhooks allows several
// space-separated signatures).
const (
	DefaultSigningGrace = 24 * time.Hour
	MaxSigningGrace     = 7 * 24 * time.Hour
)

// Audit events of the callback credentials.
const (
	EventCallbackRotated      = "workspace.callback_secret_rotated"
	EventCallbackHostsUpdated = "workspace.callback_hosts_updated"
)

// Which credentials RotateCallbackRequest.Only rotates.
const (
	RotateBoth     = ""
	RotateSigning  = "signing"
	RotateCallback = "callback"
)

// RotateCallbackRequest is the input of RotateCallback.
type RotateCallbackRequest struct {
	// Grace keeps the previous signing secret signing beside the new one
	// for this long (0: cut over at once; at most MaxSigningGrace).
	Grace time.Duration
	// Only is RotateBoth, RotateSigning or RotateCallback.
	Only string
}

// CallbackSettings is the metadata of a workspace's callback credentials;
// never their values.
type CallbackSettings struct {
	// AllowedHosts: destinations the credentials may be sent to, in the
	// allowed_hosts syntax of secrets. Empty: any destination (unless the
	// proxy requires allowed_hosts), and only admins may choose one.
	AllowedHosts []string
	UpdatedAt    time.Time
	// SigningGraceUntil is when the previous signing secret stops signing
	// (zero: no grace running).
	SigningGraceUntil time.Time
}

// RotateCallbackCredentials replaces both credentials with the default
// signing grace and returns them. Needs admin.
func (v *Vault) RotateCallbackCredentials(ctx context.Context, actor Actor) (CallbackCredentials, error) {
	return v.RotateCallback(ctx, actor, RotateCallbackRequest{Grace: DefaultSigningGrace})
}

// RotateCallback replaces the callback secret, the signing secret or both
// and returns the new values, the only time they are shown (a credential
// not rotated is left empty). The destination policy is kept. Needs admin.
func (v *Vault) RotateCallback(ctx context.Context, actor Actor, req RotateCallbackRequest) (CallbackCredentials, error) {
	if err := actor.require(RoleAdmin); err != nil {
		return CallbackCredentials{}, err
	}
	if req.Grace < 0 || req.Grace > MaxSigningGrace {
		return CallbackCredentials{}, fmt.Errorf("%w: grace must be 0 to %s", ErrInvalidArgument, MaxSigningGrace)
	}
	if req.Only != RotateBoth && req.Only != RotateSigning && req.Only != RotateCallback {
		return CallbackCredentials{}, fmt.Errorf("%w: only must be %q or %q (or absent for both)", ErrInvalidArgument, RotateSigning, RotateCallback)
	}
	ws := actor.WorkspaceID
	creds := newCallbackCredentials()
	if req.Only == RotateSigning {
		creds.CallbackSecret = Plaintext{}
	} else if err := v.putCredential(ctx, ws, CredentialCallback, creds.CallbackSecret); err != nil {
		return CallbackCredentials{}, err
	}
	if req.Only == RotateCallback {
		creds.SigningSecret = Plaintext{}
	} else {
		until := v.now().Add(req.Grace)
		cur, err := v.store.GetSecret(ctx, ws, CredentialSigning)
		switch {
		case err == nil:
			old, err := openValue(v.keys.lookup(ctx), binding{ws, CredentialSigning, cur.Version}, cur.Sealed)
			if err != nil {
				return CallbackCredentials{}, err
			}
			// Written even with no grace: it ends any earlier grace at once.
			prev := append(strconv.AppendInt(nil, until.Unix(), 10), '\n')
			if err := v.putCredential(ctx, ws, credentialSigningPrevious, Plaintext{b: append(prev, old.b...)}); err != nil {
				return CallbackCredentials{}, err
			}
		case !errors.Is(err, storage.ErrNotFound):
			return CallbackCredentials{}, err
		}
		if err := v.putCredential(ctx, ws, CredentialSigning, creds.SigningSecret); err != nil {
			return CallbackCredentials{}, err
		}
	}
	in := map[string]any{"grace_seconds": int64(req.Grace.Seconds())}
	if req.Only != RotateBoth {
		in["only"] = req.Only
	}
	ev := v.event(actor, EventCallbackRotated, ResourceWorkspace, ws, in, nil)
	heads, err := v.store.AppendAudit(ctx, []storage.AuditEvent{ev})
	if err != nil {
		return CallbackCredentials{}, err
	}
	v.noteAppended(heads)
	return creds, nil
}

// CallbackSettings returns the callback credentials' metadata. Needs admin.
func (v *Vault) CallbackSettings(ctx context.Context, actor Actor) (CallbackSettings, error) {
	if err := actor.require(RoleAdmin); err != nil {
		return CallbackSettings{}, err
	}
	rec, err := v.store.GetSecret(ctx, actor.WorkspaceID, CredentialCallback)
	if err != nil {
		return CallbackSettings{}, mapStoreErr(err, "callback secret")
	}
	out := CallbackSettings{AllowedHosts: rec.AllowedHosts, UpdatedAt: rec.UpdatedAt}
	if out.AllowedHosts == nil {
		out.AllowedHosts = []string{}
	}
	if until, _, ok := v.previousSigning(ctx, actor.WorkspaceID); ok {
		out.SigningGraceUntil = until
	}
	return out, nil
}

// SetCallbackAllowedHosts replaces the destination policy of the callback
// credentials. Needs admin: it decides where the workspace's credential
// may go, so it is as sensitive as reading it.
func (v *Vault) SetCallbackAllowedHosts(ctx context.Context, actor Actor, hosts []string) (CallbackSettings, error) {
	if err := actor.require(RoleAdmin); err != nil {
		return CallbackSettings{}, err
	}
	norm, err := NormalizeAllowedHosts(hosts)
	if err != nil {
		return CallbackSettings{}, err
	}
	for range casAttempts {
		cur, err := v.store.GetSecret(ctx, actor.WorkspaceID, CredentialCallback)
		if err != nil {
			return CallbackSettings{}, mapStoreErr(err, "callback secret")
		}
		next := cur
		next.AllowedHosts = norm
		next.UpdatedAt = v.now().UTC()
		ev := v.event(actor, EventCallbackHostsUpdated, ResourceWorkspace, actor.WorkspaceID, map[string]any{"allowed_hosts": norm}, nil)
		err = v.store.UpdateSecret(ctx, storage.UpdateSecretArgs{Secret: next, ExpectedRevision: cur.Revision, Audit: []storage.AuditEvent{ev}})
		if errors.Is(err, storage.ErrConflict) {
			continue
		}
		if err != nil {
			return CallbackSettings{}, err
		}
		v.cache.invalidate(actor.WorkspaceID, CredentialCallback)
		return v.CallbackSettings(ctx, actor)
	}
	return CallbackSettings{}, ErrBusy
}

// CallbackDestinationApproved reports whether the callback credentials'
// allowed_hosts cover dest, i.e. whether a key that may not read them may
// still choose dest as a queue's callback. An empty policy covers nothing.
func (v *Vault) CallbackDestinationApproved(ctx context.Context, workspaceID string, dest *url.URL) (bool, error) {
	e, err := v.credentialEntry(ctx, workspaceID, CredentialCallback)
	if err != nil {
		return false, err
	}
	port, _ := strconv.Atoi(dest.Port())
	d := Destination{Scheme: strings.ToLower(dest.Scheme), Host: dest.Hostname(), Port: port}
	return len(e.allowedHosts) > 0 && destinationMatches(e.hosts, d), nil
}

// CredentialRequest asks for a dispatch credential on behalf of one
// outgoing request.
type CredentialRequest struct {
	WorkspaceID string
	// Host, Scheme and Port are the request's destination (Port 0: the
	// scheme's default), matched like a secret's allowed_hosts.
	Host   string
	Scheme string
	Port   int
	// RequireAllowedHosts: a credential without allowed_hosts is refused
	// (the proxy's --proxy-require-allowed-hosts).
	RequireAllowedHosts bool
}

// CallbackSecret returns the workspace's callback secret for the proxy to
// send as Authorization: Bearer, if the destination policy allows req.Host
// (ErrHostNotAllowed otherwise). Only Rotor's dispatcher reaches it.
func (v *Vault) CallbackSecret(ctx context.Context, req CredentialRequest) (Plaintext, error) {
	if err := v.credentialAllowed(ctx, req); err != nil {
		return Plaintext{}, err
	}
	e, err := v.credentialEntry(ctx, req.WorkspaceID, CredentialCallback)
	return e.value, err
}

// SigningSecrets returns the signing secrets to sign a request with: the
// current one, then the previous one while a rotation's grace runs. Same
// destination rule as CallbackSecret.
func (v *Vault) SigningSecrets(ctx context.Context, req CredentialRequest) ([]Plaintext, error) {
	if err := v.credentialAllowed(ctx, req); err != nil {
		return nil, err
	}
	cur, err := v.credentialEntry(ctx, req.WorkspaceID, CredentialSigning)
	if err != nil {
		return nil, err
	}
	out := []Plaintext{cur.value}
	if until, prev, ok := v.previousSigning(ctx, req.WorkspaceID); ok && v.now().Before(until) {
		out = append(out, prev)
	}
	return out, nil
}

func (v *Vault) credentialAllowed(ctx context.Context, req CredentialRequest) error {
	e, err := v.credentialEntry(ctx, req.WorkspaceID, CredentialCallback)
	if err != nil {
		return err
	}
	switch deny(e, ResolveRequest{Host: req.Host, Scheme: req.Scheme, Port: req.Port, RequireAllowedHosts: req.RequireAllowedHosts}) {
	case "":
		return nil
	case denyNoAllowedHosts:
		return fmt.Errorf("%w: the callback secret has no allowed_hosts, and this proxy requires them", ErrHostNotAllowed)
	default:
		return fmt.Errorf("%w: the callback credentials may not be sent to %q (see the callback secret's allowed_hosts)", ErrHostNotAllowed, truncate(req.Host, 100))
	}
}

// previousSigning returns the previous signing secret and the end of its
// grace, if one was kept.
func (v *Vault) previousSigning(ctx context.Context, ws string) (time.Time, Plaintext, bool) {
	e, ok := v.cache.get(ws, credentialSigningPrevious)
	if !ok {
		// Absent until the first signing rotation: remember that too, or
		// every delivery would cost a storage read.
		gen := v.cache.generation()
		var err error
		if e, err = v.load(ctx, ws, credentialSigningPrevious); errors.Is(err, ErrNotFound) {
			v.cache.putIfCurrent(ws, credentialSigningPrevious, cacheEntry{}, gen)
		}
		if err != nil {
			return time.Time{}, Plaintext{}, false
		}
	}
	if e.version == 0 {
		return time.Time{}, Plaintext{}, false
	}
	ts, key, ok := bytes.Cut(e.value.b, []byte("\n"))
	sec, err := strconv.ParseInt(string(ts), 10, 64)
	if !ok || err != nil {
		return time.Time{}, Plaintext{}, false
	}
	return time.Unix(sec, 0), Plaintext{b: key}, true
}

func (v *Vault) credentialEntry(ctx context.Context, ws, name string) (cacheEntry, error) {
	if e, ok := v.cache.get(ws, name); ok {
		return e, nil
	}
	return v.load(ctx, ws, name)
}
