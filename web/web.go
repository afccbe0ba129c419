package web

import (
	"embed"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
)

//go:embed templates/*.html
var templateFS embed.FS

// Options configure New.
type Options struct {
	Vault  *vault.Vault
	Queues *dispatch.Service
	Logger *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// SessionIdle and SessionMax bound a session (DefaultSessionIdle,
	// DefaultSessionMax when zero); see sessions.go.
	SessionIdle time.Duration
	SessionMax  time.Duration
}

// Dashboard serves /dashboard.
type Dashboard struct {
	vault  *vault.Vault
	queues *dispatch.Service
	log    *slog.Logger
	pages  map[string]*template.Template
	mux    *http.ServeMux
	// cop refuses cross-origin POSTs, /dashboard/login included (login CSRF).
	cop *http.CrossOriginProtection

	now       func() time.Time
	idle, max time.Duration
	loggedOut loggedOut
}

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
	d := &Dashboard{vault: o.Vault, queues: o.Queues, log: o.Logger, pages: map[string]*template.Template{}, mux: http.NewServeMux(),
		cop: http.NewCrossOriginProtection(), now: o.Now, idle: o.SessionIdle, max: o.SessionMax}
	for _, p := range []string{"login", "secrets", "queues", "jobs", "audit"} {
		t, err := template.ParseFS(templateFS, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			return nil, err
		}
		d.pages[p] = t
	}
	m := d.mux
	m.HandleFunc("GET /dashboard/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/dashboard/settings/secrets", http.StatusSeeOther)
	})
	m.HandleFunc("GET /dashboard/login", func(w http.ResponseWriter, r *http.Request) { d.render(w, r, "login", "", nil, nil) })
	m.HandleFunc("POST /dashboard/login", d.login)
	m.HandleFunc("POST /dashboard/logout", d.authed(d.logout))
	m.HandleFunc("GET /dashboard/settings/secrets", d.authed(d.secretsPage))
	m.HandleFunc("POST /dashboard/settings/secrets", d.authed(d.createSecret))
	m.HandleFunc("POST /dashboard/settings/secrets/{name}/rotate", d.authed(d.rotateSecret))
	m.HandleFunc("POST /dashboard/settings/secrets/{name}/delete", d.authed(d.deleteSecret))
	m.HandleFunc("GET /dashboard/queues", d.authed(d.queuesPage))
	m.HandleFunc("POST /dashboard/queues", d.authed(d.saveQueue))
	m.HandleFunc("GET /dashboard/queues/{name}/jobs", d.authed(d.jobsPage))
	m.HandleFunc("POST /dashboard/queues/{name}/retry-dead", d.authed(d.retryDead))
	m.HandleFunc("POST /dashboard/jobs/{id}/retry", d.authed(d.retryJob))
	m.HandleFunc("GET /dashboard/audit", d.authed(d.auditPage))
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
	CSRF   string
	Flash  string
	Error  string
	Data   any
}

func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, name, csrf string, data any, err error) {
	p := page{Title: strings.ToUpper(name[:1]) + name[1:], Nav: name, Signed: csrf != "", CSRF: csrf, Data: data, Flash: r.URL.Query().Get("flash")}
	if err != nil {
		p.Error = err.Error()
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if terr := d.pages[name].ExecuteTemplate(w, name+".html", p); terr != nil {
		d.log.Error("dashboard template", "page", name, "err", terr)
	}
}

func (q *req) back(path, flash string) {
	http.Redirect(q.w, q.r, path+"?flash="+url.QueryEscape(flash), http.StatusSeeOther)
}

// --- secrets ---

type secretRow struct {
	storage.SecretMeta
	LastUsed string
}

func (d *Dashboard) secretsPage(q *req) { d.showSecrets(q, nil) }

func (d *Dashboard) showSecrets(q *req, err error) {
	ctx := q.r.Context()
	metas, lerr := d.vault.ListSecrets(ctx, q.actor)
	if err == nil {
		err = lerr
	}
	// Last use: the newest access row per secret, from one page of the log.
	last := map[string]time.Time{}
	if page, aerr := d.vault.ListAudit(ctx, q.actor, storage.AuditQuery{EventType: vault.EventSecretAccessed, Limit: 1000}); aerr == nil {
		for _, e := range page.Events {
			if _, seen := last[e.ResourceID]; !seen {
				last[e.ResourceID] = e.OccurredAt
			}
		}
	}
	rows := make([]secretRow, 0, len(metas))
	for _, m := range metas {
		lu := "-"
		if t, ok := last[m.Name]; ok {
			lu = t.Format("2006-01-02 15:04:05")
		}
		rows = append(rows, secretRow{SecretMeta: m, LastUsed: lu})
	}
	d.render(q.w, q.r, "secrets", q.sess.csrf, map[string]any{"Secrets": rows}, err)
}

func splitHosts(s string) []string {
	var out []string
	for _, h := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
		out = append(out, h)
	}
	return out
}

func (d *Dashboard) createSecret(q *req) {
	f := q.r.PostForm
	_, err := d.vault.CreateSecret(q.r.Context(), q.actor, vault.CreateSecretRequest{
		Name: strings.TrimSpace(f.Get("name")), Value: vault.PlaintextString(f.Get("value")), AllowedHosts: splitHosts(f.Get("hosts")),
	})
	if err != nil {
		q.w.WriteHeader(http.StatusUnprocessableEntity)
		d.showSecrets(q, err)
		return
	}
	q.back("/dashboard/settings/secrets", "Created "+f.Get("name"))
}

func (d *Dashboard) rotateSecret(q *req) {
	v := vault.PlaintextString(q.r.PostForm.Get("value"))
	name := q.r.PathValue("name")
	if _, err := d.vault.UpdateSecret(q.r.Context(), q.actor, vault.UpdateSecretRequest{Name: name, Value: &v}); err != nil {
		q.w.WriteHeader(http.StatusUnprocessableEntity)
		d.showSecrets(q, err)
		return
	}
	q.back("/dashboard/settings/secrets", "Rotated "+name)
}

func (d *Dashboard) deleteSecret(q *req) {
	name := q.r.PathValue("name")
	if q.r.PostForm.Get("confirm") != "yes" {
		q.w.WriteHeader(http.StatusUnprocessableEntity)
		d.showSecrets(q, errors.New("tick the box to confirm the deletion"))
		return
	}
	if d.queues != nil {
		if users, _ := d.queues.QueuesReferencing(q.r.Context(), q.actor.WorkspaceID, name); len(users) > 0 {
			q.w.WriteHeader(http.StatusConflict)
			d.showSecrets(q, &dispatch.SecretInUseError{Secret: name, Queues: users})
			return
		}
	}
	if err := d.vault.DeleteSecret(q.r.Context(), q.actor, name); err != nil {
		q.w.WriteHeader(http.StatusUnprocessableEntity)
		d.showSecrets(q, err)
		return
	}
	q.back("/dashboard/settings/secrets", "Deleted "+name)
}

// --- queues and jobs ---

type queueForm struct{ Name, URL, Headers string }

func (d *Dashboard) queuesPage(q *req) { d.showQueues(q, queueForm{}, nil) }

func (d *Dashboard) showQueues(q *req, form queueForm, err error) {
	var qs []storage.Queue
	if d.queues != nil {
		var lerr error
		if qs, lerr = d.queues.ListQueues(q.r.Context(), q.actor); err == nil {
			err = lerr
		}
	}
	d.render(q.w, q.r, "queues", q.sess.csrf, map[string]any{"Queues": qs, "Form": form}, err)
}

func (d *Dashboard) saveQueue(q *req) {
	f := q.r.PostForm
	form := queueForm{Name: strings.TrimSpace(f.Get("name")), URL: strings.TrimSpace(f.Get("callback_url")), Headers: f.Get("headers")}
	headers := map[string]string{}
	for _, line := range strings.Split(form.Headers, "\n") {
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			q.w.WriteHeader(http.StatusUnprocessableEntity)
			d.showQueues(q, form, errors.New("headers: write one Name: value per line"))
			return
		}
		headers[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	if d.queues == nil {
		d.showQueues(q, form, errors.New("queues are not served by this node"))
		return
	}
	spec := dispatch.QueueSpec{CallbackURL: &form.URL, CallbackHeaders: &headers}
	if _, _, err := d.queues.UpdateQueue(q.r.Context(), q.actor, form.Name, spec); err != nil {
		// Validation errors (a missing secret, a malformed reference) show
		// next to the form, which keeps what was typed.
		q.w.WriteHeader(http.StatusUnprocessableEntity)
		d.showQueues(q, form, err)
		return
	}
	q.back("/dashboard/queues", "Saved queue "+form.Name)
}

func (d *Dashboard) jobsPage(q *req) {
	name, status := q.r.PathValue("name"), q.r.URL.Query().Get("status")
	var page storage.JobPage
	var err error
	if d.queues != nil {
		page, err = d.queues.ListJobs(q.r.Context(), q.actor, storage.JobQuery{Queue: name, Status: status, Limit: 200})
	}
	d.render(q.w, q.r, "jobs", q.sess.csrf, map[string]any{"Queue": name, "Status": status, "Jobs": page.Jobs}, err)
}

func (d *Dashboard) retryDead(q *req) {
	name := q.r.PathValue("name")
	n, err := d.queues.RetryDead(q.r.Context(), q.actor, name)
	if err != nil {
		q.back("/dashboard/queues/"+url.PathEscape(name)+"/jobs", "Retry failed: "+err.Error())
		return
	}
	q.back("/dashboard/queues/"+url.PathEscape(name)+"/jobs", "Retried dead jobs: "+itoa(n))
}

func (d *Dashboard) retryJob(q *req) {
	queue := q.r.PostForm.Get("queue")
	msg := "Retried " + q.r.PathValue("id")
	if _, err := d.queues.RetryJob(q.r.Context(), q.actor, q.r.PathValue("id")); err != nil {
		msg = "Retry failed: " + err.Error()
	}
	q.back("/dashboard/queues/"+url.PathEscape(queue)+"/jobs", msg)
}

// --- audit ---

func (d *Dashboard) auditPage(q *req) {
	v := q.r.URL.Query()
	aq := storage.AuditQuery{EventType: v.Get("event_type"), ResourceType: v.Get("resource_type"), ResourceID: v.Get("resource_id"), Limit: 200}
	page, err := d.vault.ListAudit(q.r.Context(), q.actor, aq)
	d.render(q.w, q.r, "audit", q.sess.csrf, map[string]any{"Events": page.Events, "Q": aq}, err)
}

func itoa(n int) string { return strconv.Itoa(n) }
