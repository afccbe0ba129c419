package web

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"time"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
)

type secretRow struct {
	storage.SecretMeta
	LastUsed time.Time
}

func (d *Dashboard) secretsPage(q *req) { d.showSecrets(q, nil) }

// lastUsed: the newest access row per secret, from one page of the log.
func (d *Dashboard) lastUsed(q *req) map[string]time.Time {
	last := map[string]time.Time{}
	if page, err := d.vault.ListAudit(q.r.Context(), q.actor, storage.AuditQuery{EventType: vault.EventSecretAccessed, Limit: 1000}); err == nil {
		for _, e := range page.Events {
			if _, seen := last[e.ResourceID]; !seen {
				last[e.ResourceID] = e.OccurredAt
			}
		}
	}
	return last
}

func (d *Dashboard) showSecrets(q *req, err error) {
	metas, lerr := d.vault.ListSecrets(q.r.Context(), q.actor)
	if err == nil {
		err = lerr
	}
	last := d.lastUsed(q)
	rows := make([]secretRow, 0, len(metas))
	for _, m := range metas {
		rows = append(rows, secretRow{SecretMeta: m, LastUsed: last[m.Name]})
	}
	data := map[string]any{"Secrets": rows}
	if err != nil {
		d.fail(q, "secrets", data, err)
		return
	}
	d.render(q.w, q.r, "secrets", q, data, nil)
}

func splitHosts(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
}

func secretPath(name string) string { return "/dashboard/settings/secrets/" + url.PathEscape(name) }

func (d *Dashboard) createSecret(q *req) {
	f := q.r.PostForm
	name := strings.TrimSpace(f.Get("name"))
	_, err := d.vault.CreateSecret(q.r.Context(), q.actor, vault.CreateSecretRequest{
		Name: name, Value: vault.PlaintextString(f.Get("value")), AllowedHosts: splitHosts(f.Get("hosts")),
	})
	if err != nil {
		d.showSecretsErr(q, err)
		return
	}
	q.back(secretPath(name), "Created "+name)
}

func (d *Dashboard) showSecretsErr(q *req, err error) {
	metas, _ := d.vault.ListSecrets(q.r.Context(), q.actor)
	rows := make([]secretRow, 0, len(metas))
	for _, m := range metas {
		rows = append(rows, secretRow{SecretMeta: m})
	}
	d.fail(q, "secrets", map[string]any{"Secrets": rows}, err)
}

// version is one value version of a secret, from the audit trail
// (metadata only: the store keeps the current value alone).
type version struct {
	Version int64
	Hint    string
	At      time.Time
	Actor   string
	Event   string
}

type secretData struct {
	Secret     storage.SecretMeta
	LastUsed   time.Time
	Versions   []version
	References []Reference
	RefError   string
	Names      map[string]string
}

func (d *Dashboard) secretPage(q *req) { d.showSecret(q, nil) }

func (d *Dashboard) showSecret(q *req, err error) {
	ctx := q.r.Context()
	name := q.r.PathValue("name")
	meta, gerr := d.vault.GetSecret(ctx, q.actor, name)
	if gerr != nil {
		d.fail(q, "secret", secretData{Secret: storage.SecretMeta{Name: name}}, gerr)
		return
	}
	data := secretData{Secret: meta, LastUsed: d.lastUsed(q)[name], Names: d.keyNames(q)}
	// Versions: value events of this secret, newest first, back to its
	// (latest) creation.
	if page, aerr := d.vault.ListAudit(ctx, q.actor, storage.AuditQuery{ResourceType: vault.ResourceSecret, ResourceID: name, Limit: 500}); aerr == nil {
		for _, e := range page.Events {
			if e.EventType != vault.EventSecretCreated && e.EventType != vault.EventSecretRotated {
				continue
			}
			var out struct {
				Version int64  `json:"version"`
				Hint    string `json:"value_hint"`
			}
			_ = json.Unmarshal(e.Output, &out)
			data.Versions = append(data.Versions, version{Version: out.Version, Hint: out.Hint, At: e.OccurredAt, Actor: e.ActorID, Event: e.EventType})
			if e.EventType == vault.EventSecretCreated {
				break
			}
		}
	}
	refs, rerr := d.references(q, name)
	data.References = refs
	if rerr != nil {
		data.RefError = "references could not all be listed: " + rerr.Error()
	}
	if err != nil {
		d.fail(q, "secret", data, err)
		return
	}
	d.render(q.w, q.r, "secret", q, data, nil)
}

// references lists queues referencing the secret, then what the
// Options.References finders add (workflows).
func (d *Dashboard) references(q *req, name string) ([]Reference, error) {
	var out []Reference
	var errs []error
	if d.queues != nil {
		users, err := d.queues.QueuesReferencing(q.r.Context(), q.actor.WorkspaceID, name)
		errs = append(errs, err)
		for _, u := range users {
			out = append(out, Reference{Kind: "queue", Name: u, Link: "/dashboard/queues/" + url.PathEscape(u) + "/jobs"})
		}
	}
	for _, f := range d.refs {
		refs, err := f(q.r.Context(), q.actor.WorkspaceID, name)
		errs = append(errs, err)
		out = append(out, refs...)
	}
	return out, errors.Join(errs...)
}

func (d *Dashboard) rotateSecret(q *req) {
	v := vault.PlaintextString(q.r.PostForm.Get("value"))
	name := q.r.PathValue("name")
	if _, err := d.vault.UpdateSecret(q.r.Context(), q.actor, vault.UpdateSecretRequest{Name: name, Value: &v}); err != nil {
		d.showSecret(q, err)
		return
	}
	q.back(secretPath(name), "Rotated "+name)
}

func (d *Dashboard) secretHosts(q *req) {
	name := q.r.PathValue("name")
	hosts := splitHosts(q.r.PostForm.Get("hosts"))
	if hosts == nil {
		hosts = []string{}
	}
	if _, err := d.vault.UpdateSecret(q.r.Context(), q.actor, vault.UpdateSecretRequest{Name: name, AllowedHosts: &hosts}); err != nil {
		d.showSecret(q, err)
		return
	}
	q.back(secretPath(name), "Saved the allowed hosts of "+name)
}

func (d *Dashboard) deleteSecret(q *req) {
	name := q.r.PathValue("name")
	if q.r.PostForm.Get("confirm") != "yes" {
		d.showSecret(q, errors.New("tick the box to confirm the deletion"))
		return
	}
	// A failed lookup refuses the deletion: a secret still in use would
	// make every delivery that needs it fail.
	inUse := &dispatch.SecretInUseError{Secret: name}
	if d.queues != nil {
		users, err := d.queues.QueuesReferencing(q.r.Context(), q.actor.WorkspaceID, name)
		if err != nil {
			d.showSecret(q, err)
			return
		}
		inUse.Queues = users
	}
	if d.flows != nil {
		refs, err := d.flows.WorkflowsReferencing(q.r.Context(), q.actor.WorkspaceID, name)
		if err != nil {
			d.showSecret(q, err)
			return
		}
		for _, ref := range refs {
			inUse.Workflows = append(inUse.Workflows, ref.Workflow)
		}
	}
	if len(inUse.Queues)+len(inUse.Workflows) > 0 {
		d.showSecret(q, inUse)
		return
	}
	if err := d.vault.DeleteSecret(q.r.Context(), q.actor, name); err != nil {
		d.showSecret(q, err)
		return
	}
	q.back("/dashboard/settings/secrets", "Deleted "+name)
}

// keyNames maps API key ids to their names, for admins (a member cannot
// list keys: ids alone then).
func (d *Dashboard) keyNames(q *req) map[string]string {
	names := map[string]string{}
	if !q.actor.Can(vault.RoleAdmin) {
		return names
	}
	keys, err := d.vault.ListAPIKeys(q.r.Context(), q.actor)
	if err != nil {
		return names
	}
	for _, k := range keys {
		names[k.ID] = k.Name
	}
	return names
}
