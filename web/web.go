package web

import (
	"context"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
	"rotor.sh/rotor/workflow"
)

//go:embed templates/*.html
var templateFS embed.FS

// Reference is one place that uses a secret, shown on the secret's page.
type Reference struct {
	Kind string // "queue", "workflow", ...
	Name string
	// Link is a dashboard path to it ("" for none).
	Link string
	// Where says which parts use it (a workflow's steps and fields).
	Where string
}

// ReferenceFinder lists what in a workspace references a secret. Queues
// are built in; other features (workflows) add theirs through
// Options.References.
type ReferenceFinder func(ctx context.Context, workspaceID, secret string) ([]Reference, error)

// Options configure New.
type Options struct {
	Vault  *vault.Vault
	Queues *dispatch.Service
	Logger *slog.Logger
	// Metrics is read for the overview's proxy requests by outcome (this
	// node's counters since it started); nil leaves the panel out.
	Metrics prometheus.Gatherer
	// References adds finders of secret references beside queues and
	// workflows.
	References []ReferenceFinder
	// Workflows serves the workflow pages and adds workflows to a secret's
	// references; nil shows "not served by this node" there.
	Workflows *workflow.Service
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// SessionIdle and SessionMax bound a session (DefaultSessionIdle,
	// DefaultSessionMax when zero); see sessions.go.
	SessionIdle time.Duration
	SessionMax  time.Duration
}

// Dashboard serves /dashboard.
type Dashboard struct {
	vault   *vault.Vault
	queues  *dispatch.Service
	log     *slog.Logger
	metrics prometheus.Gatherer
	refs    []ReferenceFinder
	flows   *workflow.Service
	pages   map[string]*template.Template
	mux     *http.ServeMux
	// cop refuses cross-origin POSTs, /dashboard/login included (login CSRF).
	cop *http.CrossOriginProtection

	now       func() time.Time
	idle, max time.Duration
	loggedOut revocations
}

var pageNames = []string{"login", "overview", "secrets", "secret", "queues", "jobs", "job", "keys", "settings", "audit", "workflows", "workflow", "run", "notfound"}

// New builds the dashboard handler (mount it at /dashboard/).
func New(o Options) (*Dashboard, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SessionIdle <= 0 {
		o.SessionIdle = DefaultSessionIdle
	}
	if o.SessionMax <= 0 {
		o.SessionMax = DefaultSessionMax
	}
	d := &Dashboard{vault: o.Vault, queues: o.Queues, log: o.Logger, metrics: o.Metrics, refs: o.References, flows: o.Workflows,
		pages: map[string]*template.Template{}, mux: http.NewServeMux(),
		cop: http.NewCrossOriginProtection(), now: o.Now, idle: o.SessionIdle, max: o.SessionMax}
	if d.flows != nil {
		d.refs = append([]ReferenceFinder{d.workflowReferences}, d.refs...)
	}
	funcs := template.FuncMap{"dur": roundDuration, "when": d.when, "ago": d.ago, "pretty": prettyJSON, "lastAttempt": lastAttempt}
	for _, p := range pageNames {
		t, err := template.New(p).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			return nil, err
		}
		d.pages[p] = t
	}
	m := d.mux
	m.HandleFunc("GET /dashboard/{$}", d.authed(d.overviewPage))
	m.HandleFunc("GET /dashboard/login", func(w http.ResponseWriter, r *http.Request) { d.render(w, r, "login", nil, nil, nil) })
	m.HandleFunc("POST /dashboard/login", d.login)
	m.HandleFunc("POST /dashboard/logout", d.authed(d.logout))
	m.HandleFunc("GET /dashboard/settings/secrets", d.authed(d.secretsPage))
	m.HandleFunc("POST /dashboard/settings/secrets", d.authed(d.createSecret))
	m.HandleFunc("GET /dashboard/settings/secrets/{name}", d.authed(d.secretPage))
	m.HandleFunc("POST /dashboard/settings/secrets/{name}/rotate", d.authed(d.rotateSecret))
	m.HandleFunc("POST /dashboard/settings/secrets/{name}/hosts", d.authed(d.secretHosts))
	m.HandleFunc("POST /dashboard/settings/secrets/{name}/delete", d.authed(d.deleteSecret))
	m.HandleFunc("GET /dashboard/settings/keys", d.authed(d.keysPage))
	m.HandleFunc("POST /dashboard/settings/keys", d.authed(d.createKey))
	m.HandleFunc("POST /dashboard/settings/keys/{id}/revoke", d.authed(d.revokeKey))
	m.HandleFunc("GET /dashboard/settings/callback", d.authed(d.callbackPage))
	m.HandleFunc("POST /dashboard/settings/callback/hosts", d.authed(d.callbackHosts))
	m.HandleFunc("POST /dashboard/settings/callback/rotate", d.authed(d.rotateCallback))
	m.HandleFunc("GET /dashboard/queues", d.authed(d.queuesPage))
	m.HandleFunc("POST /dashboard/queues", d.authed(d.saveQueue))
	m.HandleFunc("GET /dashboard/queues/{name}/jobs", d.authed(d.jobsPage))
	m.HandleFunc("POST /dashboard/queues/{name}/retry-dead", d.authed(d.retryDead))
	m.HandleFunc("POST /dashboard/queues/{name}/test", d.authed(d.sendTest))
	m.HandleFunc("GET /dashboard/jobs/{id}", d.authed(d.jobPage))
	m.HandleFunc("POST /dashboard/jobs/{id}/retry", d.authed(d.retryJob))
	m.HandleFunc("POST /dashboard/jobs/{id}/replay", d.authed(d.replayJob))
	m.HandleFunc("GET /dashboard/audit", d.authed(d.auditPage))
	m.HandleFunc("GET /dashboard/workflows", d.authed(d.workflowsPage))
	m.HandleFunc("GET /dashboard/workflows/{name}", d.authed(d.workflowPage))
	m.HandleFunc("POST /dashboard/workflows/{name}/runs", d.authed(d.startRun))
	m.HandleFunc("GET /dashboard/workflow-runs/{id}", d.authed(d.runPage))
	m.HandleFunc("POST /dashboard/workflow-runs/{id}/signal", d.authed(d.signalRun))
	m.HandleFunc("POST /dashboard/workflow-runs/{id}/cancel", d.authed(d.cancelRun))
	m.HandleFunc("POST /dashboard/workflow-runs/{id}/retry", d.authed(d.retryRun))
	m.HandleFunc("/dashboard/", d.notFound)
	return d, nil
}

// ServeHTTP serves the dashboard with headers that keep it from being
// framed, cached or sniffed.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	d.cop.Handler(d.mux).ServeHTTP(w, r)
}

type page struct {
	Title  string
	Nav    string
	Signed bool
	// Admin shows the admin-only nav entries (the vault checks the role
	// again on every action).
	Admin bool
	CSRF  string
	Flash string
	Error string
	Data  any
}

var titles = map[string]string{"keys": "API keys", "settings": "Callback credentials", "audit": "Audit log", "notfound": "Not found", "job": "Job", "secret": "Secret", "workflow": "Workflow", "run": "Workflow run"}

// render writes a page; q is nil when signed out.
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, name string, q *req, data any, err error) {
	title := titles[name]
	if title == "" {
		title = strings.ToUpper(name[:1]) + name[1:]
	}
	nav := name
	switch name {
	case "secret":
		nav = "secrets"
	case "jobs", "job":
		nav = "queues"
	case "workflow", "run":
		nav = "workflows"
	}
	p := page{Title: title, Nav: nav, Data: data}
	if q != nil {
		p.Signed, p.CSRF, p.Admin = true, q.sess.csrf, q.actor.Can(vault.RoleAdmin)
		p.Flash = d.openFlash(r.URL.Query().Get("flash"), q.s.ID)
	}
	if err != nil {
		p.Error = err.Error()
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if terr := d.pages[name].ExecuteTemplate(w, name+".html", p); terr != nil {
		d.log.Error("dashboard template", "page", name, "err", terr)
	}
}

// fail writes a page with its error and the status the error calls for:
// the one place the dashboard maps errors to statuses.
func (d *Dashboard) fail(q *req, name string, data any, err error) {
	q.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	q.w.WriteHeader(statusOf(err))
	d.render(q.w, q.r, name, q, data, err)
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, vault.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, vault.ErrNotFound), errors.Is(err, storage.ErrNotFound), errors.Is(err, errNoWorkflows):
		return http.StatusNotFound
	case errors.Is(err, vault.ErrExists), errors.Is(err, dispatch.ErrSecretInUse), errors.Is(err, dispatch.ErrJobState), errors.Is(err, workflow.ErrRunState):
		return http.StatusConflict
	case errors.Is(err, storage.ErrUnavailable), errors.Is(err, vault.ErrAuditUnavailable), errors.Is(err, vault.ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusUnprocessableEntity
}

// back redirects to path with a flash message. The message travels
// sealed and bound to the session, so a page shows only what the server
// said to this session: a link cannot put its own text (phishing) on a
// dashboard page, nor replay another session's message.
func (q *req) back(path, flash string) {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	sealed := q.d.vault.SealSession([]byte(flashPrefix + q.s.ID + "\x00" + flash))
	http.Redirect(q.w, q.r, path+sep+"flash="+base64.RawURLEncoding.EncodeToString(sealed), http.StatusSeeOther)
}

// flashPrefix keeps a sealed flash from ever opening as a session (whose
// plaintext is a JSON object) and the other way round.
const flashPrefix = "rotor-flash\x00"

// openFlash returns the message back sealed for session sid, or
// "" for anything else.
func (d *Dashboard) openFlash(v, sid string) string {
	if v == "" || len(v) > maxCookieBytes {
		return ""
	}
	raw, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return ""
	}
	pt, err := d.vault.OpenSession(raw)
	if err != nil {
		return ""
	}
	rest, ok := strings.CutPrefix(string(pt), flashPrefix)
	if !ok {
		return ""
	}
	id, msg, ok := strings.Cut(rest, "\x00")
	if !ok || id != sid || sid == "" {
		return ""
	}
	return msg
}

// notFound answers unknown dashboard paths with a styled page (with the
// nav when signed in).
func (d *Dashboard) notFound(w http.ResponseWriter, r *http.Request) {
	var q *req
	if s, ok := d.session(r); ok {
		if actor, err := d.vault.ActorByKeyID(r.Context(), s.KeyID); err == nil {
			q = &req{w: w, r: r, d: d, actor: actor, sess: sessionView{csrf: s.CSRF}, s: s}
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusNotFound)
	d.render(w, r, "notfound", q, map[string]any{"Path": r.URL.Path}, nil)
}

// lastAttempt is a job's newest attempt (nil before the first).
func lastAttempt(as []storage.Attempt) *storage.Attempt {
	if len(as) == 0 {
		return nil
	}
	return &as[len(as)-1]
}

func itoa(n int) string { return strconv.Itoa(n) }
