package vault

import (
	"context"
	"fmt"
	"regexp"

	"rotor.sh/rotor/storage"
)

// DefaultWorkspace is the workspace created on first start.
const DefaultWorkspace = "default"

var workspaceNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// BootstrapResult says what Bootstrap did.
type BootstrapResult struct {
	Created   bool
	Workspace storage.Workspace
	KeyID     string
	// Key is the new operator key, set only when Created and it was generated
	// (not supplied): the one moment it can be shown.
	Key string
	// Callback holds the new workspace's dispatch credentials, when Created.
	Callback CallbackCredentials
}

// Bootstrap prepares an empty store: the default workspace and its operator
// key. adminKey, if non-empty, becomes that key (automation and CI);
// otherwise one is generated. On a store that has workspaces it does nothing.
func (v *Vault) Bootstrap(ctx context.Context, adminKey string) (BootstrapResult, error) {
	wss, err := v.store.ListWorkspaces(ctx)
	if err != nil {
		return BootstrapResult{}, err
	}
	if len(wss) > 0 {
		return BootstrapResult{Workspace: wss[0]}, nil
	}
	id, key := newAPIKey()
	generated := true
	if adminKey != "" {
		if len(adminKey) < minBootstrapLen || len(adminKey) > maxAPIKeyLen {
			return BootstrapResult{}, fmt.Errorf("bootstrap API key must be %d to %d characters", minBootstrapLen, maxAPIKeyLen)
		}
		id, key, generated = keyIDOf(adminKey), adminKey, false
	}
	ws, rec := v.newWorkspace(DefaultWorkspace, id, key, RoleOperator, "bootstrap")
	ev := v.event(Actor{KeyID: id, WorkspaceID: ws.ID}, EventWorkspaceCreated, ResourceWorkspace, ws.ID,
		map[string]any{"name": ws.Name, "bootstrap": true}, map[string]any{"admin_key_id": id})
	if err := v.store.CreateWorkspace(ctx, storage.CreateWorkspaceArgs{Workspace: ws, AdminKey: &rec, Audit: []storage.AuditEvent{ev}}); err != nil {
		return BootstrapResult{}, mapStoreErr(err, "workspace "+ws.Name)
	}
	res := BootstrapResult{Created: true, Workspace: ws, KeyID: id}
	if generated {
		res.Key = key
	}
	if res.Callback, _, err = v.EnsureCallbackCredentials(ctx, ws.ID); err != nil {
		return res, err
	}
	return res, nil
}

func (v *Vault) newWorkspace(name, keyID, key, role, keyName string) (storage.Workspace, storage.APIKey) {
	now := v.now().UTC()
	ws := storage.Workspace{ID: randomID("ws_", 8), Name: name, CreatedAt: now}
	rec := storage.APIKey{ID: keyID, WorkspaceID: ws.ID, Name: keyName, Role: role, Hash: hashKey(key), CreatedAt: now}
	return ws, rec
}

// NewWorkspace is what CreateWorkspace returns: secrets shown once.
type NewWorkspace struct {
	Workspace storage.Workspace
	AdminKey  storage.APIKey
	Key       string
	Callback  CallbackCredentials
}

// CreateWorkspace creates a workspace with an admin key and its dispatch
// credentials, all returned once. Needs the operator role.
func (v *Vault) CreateWorkspace(ctx context.Context, actor Actor, name string) (NewWorkspace, error) {
	ws, rec, key, err := v.createWorkspace(ctx, actor, name)
	if err != nil {
		return NewWorkspace{}, err
	}
	creds, _, err := v.EnsureCallbackCredentials(ctx, ws.ID)
	if err != nil {
		return NewWorkspace{}, err
	}
	return NewWorkspace{Workspace: ws, AdminKey: rec, Key: key, Callback: creds}, nil
}

func (v *Vault) createWorkspace(ctx context.Context, actor Actor, name string) (storage.Workspace, storage.APIKey, string, error) {
	if err := actor.require(RoleOperator); err != nil {
		return storage.Workspace{}, storage.APIKey{}, "", err
	}
	if !workspaceNameRE.MatchString(name) {
		return storage.Workspace{}, storage.APIKey{}, "", fmt.Errorf("%w: workspace name must match ^[a-z][a-z0-9-]{0,62}$", ErrInvalidArgument)
	}
	id, key := newAPIKey()
	ws, rec := v.newWorkspace(name, id, key, RoleAdmin, "admin")
	// The row goes to the operator's workspace (who did it) and the new one (what happened to it).
	evs := []storage.AuditEvent{
		v.event(actor, EventWorkspaceCreated, ResourceWorkspace, ws.ID, map[string]any{"name": name}, map[string]any{"admin_key_id": id}),
		v.event(Actor{KeyID: actor.KeyID, WorkspaceID: ws.ID}, EventWorkspaceCreated, ResourceWorkspace, ws.ID, map[string]any{"name": name}, map[string]any{"admin_key_id": id}),
	}
	if err := v.store.CreateWorkspace(ctx, storage.CreateWorkspaceArgs{Workspace: ws, AdminKey: &rec, Audit: evs}); err != nil {
		return storage.Workspace{}, storage.APIKey{}, "", mapStoreErr(err, fmt.Sprintf("workspace %q", name))
	}
	return ws, rec, key, nil
}

// Workspace returns the actor's workspace.
func (v *Vault) Workspace(ctx context.Context, actor Actor) (storage.Workspace, error) {
	ws, err := v.store.GetWorkspace(ctx, actor.WorkspaceID)
	return ws, mapStoreErr(err, "workspace")
}
