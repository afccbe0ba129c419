package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"rotor.sh/rotor/vault"
)

// Sessions are sealed cookies (vault.SealSession: AES-GCM under a key
// derived from the master key), not server state. So any node sharing the
// master key serves any session behind one load balancer, and sign-ins cost
// the server no memory. A session holds the API key's id, never the key;
// every request looks the key up, so revoking it ends its sessions at once.
const (
	// DefaultSessionIdle ends a session after this long without a request.
	DefaultSessionIdle = 30 * time.Minute
	// DefaultSessionMax ends a session this long after sign-in, active or not.
	DefaultSessionMax = 8 * time.Hour
	cookieName        = "rotor_session"
	// refreshEvery: the cookie's last-seen time is rewritten at most this
	// often (each rewrite is a new seal).
	refreshEvery = time.Minute
	// maxLoggedOut bounds the logout list; the oldest entries go first.
	maxLoggedOut   = 10000
	maxCookieBytes = 1024
)

// session is what the cookie carries.
type session struct {
	ID     string `json:"n"` // random, for logout
	KeyID  string `json:"k"`
	CSRF   string `json:"c"`
	Issued int64  `json:"i"` // unix seconds
	Seen   int64  `json:"s"`
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (d *Dashboard) setCookie(w http.ResponseWriter, r *http.Request, s session) {
	pt, _ := json.Marshal(s)
	v := base64.RawURLEncoding.EncodeToString(d.vault.SealSession(pt))
	left := time.Unix(s.Issued, 0).Add(d.max).Sub(d.now())
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: v, Path: "/dashboard", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil, MaxAge: max(1, int(left.Seconds()))})
}

func clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/dashboard", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// session opens and checks the request's cookie.
func (d *Dashboard) session(r *http.Request) (session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil || len(c.Value) > maxCookieBytes {
		return session{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil {
		return session{}, false
	}
	pt, err := d.vault.OpenSession(raw)
	if err != nil {
		return session{}, false
	}
	var s session
	if json.Unmarshal(pt, &s) != nil || s.ID == "" || s.KeyID == "" || s.CSRF == "" {
		return session{}, false
	}
	now := d.now()
	issued, seen := time.Unix(s.Issued, 0), time.Unix(s.Seen, 0)
	if now.Sub(seen) > d.idle || now.Sub(issued) > d.max || now.Before(issued.Add(-time.Minute)) || d.loggedOut.has(s.ID) {
		return session{}, false
	}
	return s, true
}

// req is one signed-in request.
type req struct {
	w     http.ResponseWriter
	r     *http.Request
	actor vault.Actor
	sess  sessionView
	// sid and ends identify the session, for logout.
	sid  string
	ends time.Time
}

// sessionView is what handlers see of the session.
type sessionView struct{ csrf string }

// authed requires a session (and, for POST, its CSRF token, beside the
// cross-origin check every POST gets), and looks the key up on every
// request, so a revoked key ends its sessions.
func (d *Dashboard) authed(h func(*req)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, ok := d.session(r)
		if !ok {
			clearCookie(w)
			http.Redirect(w, r, "/dashboard/login", http.StatusSeeOther)
			return
		}
		actor, err := d.vault.ActorByKeyID(r.Context(), s.KeyID)
		if err != nil {
			if !errors.Is(err, vault.ErrUnauthenticated) {
				d.log.Error("dashboard session check", "err", err)
				http.Error(w, "the key could not be checked; retry shortly", http.StatusServiceUnavailable)
				return
			}
			clearCookie(w)
			http.Redirect(w, r, "/dashboard/login", http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
			if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.CSRF)) != 1 {
				http.Error(w, "invalid or missing CSRF token; reload the page", http.StatusForbidden)
				return
			}
		}
		if now := d.now(); now.Sub(time.Unix(s.Seen, 0)) >= refreshEvery {
			s.Seen = now.Unix()
			d.setCookie(w, r, s)
		}
		h(&req{w: w, r: r, actor: actor, sess: sessionView{csrf: s.CSRF}, sid: s.ID, ends: time.Unix(s.Issued, 0).Add(d.max)})
	}
}

func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<16)
	key := strings.TrimSpace(r.PostFormValue("key"))
	actor, err := d.vault.Authenticate(r.Context(), key)
	if err != nil {
		w.WriteHeader(http.StatusUnauthorized)
		d.render(w, r, "login", nil, nil, errors.New("that API key is not valid"))
		return
	}
	now := d.now().Unix()
	d.setCookie(w, r, session{ID: randomToken()[:32], KeyID: actor.KeyID, CSRF: randomToken(), Issued: now, Seen: now})
	http.Redirect(w, r, "/dashboard/", http.StatusSeeOther)
}

func (d *Dashboard) logout(q *req) {
	d.loggedOut.add(q.sid, q.ends, d.now())
	clearCookie(q.w)
	http.Redirect(q.w, q.r, "/dashboard/login", http.StatusSeeOther)
}

// loggedOut remembers sessions logged out on this node until they would
// have ended anyway, so a copied cookie stops working here at once. Other
// nodes honour the logout only through the idle timeout (docs/security.md).
type loggedOut struct {
	mu    sync.Mutex
	until map[string]time.Time
	order []string
}

func (l *loggedOut) add(id string, until, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.until == nil {
		l.until = map[string]time.Time{}
	}
	// Drop what has ended, then the oldest while full.
	for len(l.order) > 0 && (len(l.order) >= maxLoggedOut || now.After(l.until[l.order[0]])) {
		delete(l.until, l.order[0])
		l.order = l.order[1:]
	}
	l.until[id] = until
	l.order = append(l.order, id)
}

func (l *loggedOut) has(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.until[id]
	return ok
}
