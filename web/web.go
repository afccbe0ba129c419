package web

import (
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
)

//go:embed templates/*.html
var templateFS embed.FS

// Session lifetime and the cookie's name.
const (
	sessionTTL  = 12 * time.Hour
	cookieName  = "rotor_session"
	maxSessions = 10000
)

// Options configure New.
type Options struct {
	Vault  *vault.Vault
	Queues *dispatch.Service
	Logger *slog.Logger
	// Now is the clock sessions expire by (time.Now when nil; tests set
	// it to move past the session lifetime).
	Now func() time.Time
}

// Dashboard serves /dashboard.
type Dashboard struct {
	vault  *vault.Vault
	queues *dispatch.Service
	log    *slog.Logger
	now    func() time.Time
	pages  map[string]*template.Template
	mux    *http.ServeMux

	mu       sync.Mutex
	sessions map[string]session
}

type session struct {
	key     string
	csrf    string
	expires time.Time
}

// New builds the dashboard handler (mount it at /dashboard/).
func New(o Options) (*Dashboard, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	d := &Dashboard{vault: o.Vault, queues: o.Queues, log: o.Logger, now: o.Now, pages: map[string]*template.Template{}, sessions: map[string]session{}, mux: http.NewServeMux()}
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
	d.mux.ServeHTTP(w, r)
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// req is one signed-in request.
type req struct {
	w     http.ResponseWriter
	r     *http.Request
	actor vault.Actor
	sess  session
	sid   string
}

func (d *Dashboard) session(r *http.Request) (string, session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return "", session{}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.sessions[c.Value]
	if !ok || d.now().After(s.expires) {
		delete(d.sessions, c.Value)
		return "", session{}, false
	}
	return c.Value, s, true
}

// authed requires a session (and, for POST, its CSRF token), and checks the
// key again on every request, so a revoked key ends its sessions.
func (d *Dashboard) authed(h func(*req)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sid, s, ok := d.session(r)
		if !ok {
			http.Redirect(w, r, "/dashboard/login", http.StatusSeeOther)
			return
		}
		actor, err := d.vault.Authenticate(r.Context(), s.key)
		if err != nil {
			d.drop(sid)
			http.Redirect(w, r, "/dashboard/login", http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
			if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.csrf)) != 1 {
				http.Error(w, "invalid or missing CSRF token; reload the page", http.StatusForbidden)
				return
			}
		}
		h(&req{w: w, r: r, actor: actor, sess: s, sid: sid})
	}
}

func (d *Dashboard) drop(sid string) {
	d.mu.Lock()
	delete(d.sessions, sid)
	d.mu.Unlock()
}

func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<16)
	key := strings.TrimSpace(r.PostFormValue("key"))
	if _, err := d.vault.Authenticate(r.Context(), key); err != nil {
		w.WriteHeader(http.StatusUnauthorized)
		d.render(w, r, "login", "", nil, errors.New("that API key is not valid"))
		return
	}
	sid := randomToken()
	d.mu.Lock()
	if len(d.sessions) >= maxSessions {
		now := d.now()
		for k, s := range d.sessions {
			if now.After(s.expires) {
				delete(d.sessions, k)
			}
		}
	}
	d.sessions[sid] = session{key: key, csrf: randomToken(), expires: d.now().Add(sessionTTL)}
	d.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: sid, Path: "/dashboard", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil, MaxAge: int(sessionTTL.Seconds())})
	http.Redirect(w, r, "/dashboard/settings/secrets", http.StatusSeeOther)
}

func (d *Dashboard) logout(q *req) {
	d.drop(q.sid)
	http.SetCookie(q.w, &http.Cookie{Name: cookieName, Value: "", Path: "/dashboard", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(q.w, q.r, "/dashboard/login", http.StatusSeeOther)
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
