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
	// maxLoggedOut bounds the session ids a node remembers as logged out,
	// maxLoggedOutPerKey those of one API key; maxLoggedOutKeys bounds the
	// keys with a logout record. Past a bound the record is folded into a
	// watermark ("every session issued until now"), never dropped:
	// eviction fails closed (see revocations).
	maxLoggedOut       = 10000
	maxLoggedOutPerKey = 32
	maxLoggedOutKeys   = 50000
	maxCookieBytes     = 1024
)

// session is what the cookie carries.
type session struct {
	ID     string `json:"n"` // random, for logout
	KeyID  string `json:"k"`
	CSRF   string `json:"c"`
	Issued int64  `json:"i"` // unix seconds
	Seen   int64  `json:"s"`
	// IssuedNano orders sign-ins against logout watermarks (a second is
	// too coarse: a watermark must not catch the next sign-in). Cookies
	// sealed before it existed fall back to Issued, which is no later than
	// the real sign-in, so a watermark still covers them.
	IssuedNano int64 `json:"t,omitempty"`
}

// issuedAt is the sign-in time in unix nanoseconds.
func (s session) issuedAt() int64 {
	if s.IssuedNano != 0 {
		return s.IssuedNano
	}
	return s.Issued * int64(time.Second)
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
	if now.Sub(seen) > d.idle || now.Sub(issued) > d.max || now.Before(issued.Add(-time.Minute)) || d.loggedOut.revoked(s) {
		return session{}, false
	}
	return s, true
}

// req is one signed-in request.
type req struct {
	w     http.ResponseWriter
	r     *http.Request
	d     *Dashboard
	actor vault.Actor
	sess  sessionView
	// s is the session, for logout and flash messages.
	s session
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
		h(&req{w: w, r: r, d: d, actor: actor, sess: sessionView{csrf: s.CSRF}, s: s})
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
	now := d.now()
	d.setCookie(w, r, session{ID: randomToken()[:32], KeyID: actor.KeyID, CSRF: randomToken(), Issued: now.Unix(), Seen: now.Unix(), IssuedNano: now.UnixNano()})
	http.Redirect(w, r, "/dashboard/", http.StatusSeeOther)
}

func (d *Dashboard) logout(q *req) {
	if d.loggedOut.add(q.s, d.now(), d.max) {
		d.log.Warn("dashboard: more API keys with logged-out sessions than this node keeps; every session signed in until now must sign in again",
			"keys", maxLoggedOutKeys)
	}
	clearCookie(q.w)
	http.Redirect(q.w, q.r, "/dashboard/login", http.StatusSeeOther)
}

// revocations remember, on this node, the sessions logged out here until
// they would have ended anyway, so a copied cookie stops working here at
// once. Other nodes honour the logout only through the session's own
// timeouts (docs/security.md).
//
// Records are per API key, so one key's sign-outs never touch another
// key's record: a flood of logouts by any other user cannot revive a
// session. Memory is bounded, and each bound fails closed:
//   - past maxLoggedOutPerKey ids of one key, or maxLoggedOut ids on the
//     node, the key's ids fold into its watermark: every session of that
//     key issued until now is out (the key's other sessions sign in again);
//   - past maxLoggedOutKeys keys, every record folds into a node-wide
//     watermark (everyone signs in again).
//
// Ids and watermarks are dropped once every session they cover has passed
// its absolute lifetime.
type revocations struct {
	mu    sync.Mutex
	keys  map[string]*keyRevocations
	ids   int   // ids held across keys
	all   int64 // node-wide watermark (unix ns; 0 for none)
	swept time.Time
}

type keyRevocations struct {
	before int64            // sessions issued at or before (unix ns) are out; 0 for none
	ids    map[string]int64 // logged-out session id → its issue time (unix ns)
}

// add records s as logged out; it reports whether the node-wide watermark
// had to be raised.
func (l *revocations) add(s session, now time.Time, lifetime time.Duration) (all bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) >= refreshEvery {
		l.sweep(now, lifetime)
	}
	at := s.issuedAt()
	if at <= l.all {
		return false
	}
	k := l.keys[s.KeyID]
	if k == nil {
		if len(l.keys) >= maxLoggedOutKeys {
			l.all = max(now.UnixNano(), at)
			for _, k := range l.keys {
				l.all = max(l.all, k.before, maxIssued(k.ids))
			}
			l.keys, l.ids = nil, 0
			return true
		}
		if l.keys == nil {
			l.keys = map[string]*keyRevocations{}
		}
		k = &keyRevocations{}
		l.keys[s.KeyID] = k
	}
	switch {
	case at <= k.before:
	case len(k.ids) >= maxLoggedOutPerKey || l.ids >= maxLoggedOut:
		k.before = max(k.before, now.UnixNano(), at, maxIssued(k.ids))
		l.ids -= len(k.ids)
		k.ids = nil
	default:
		if k.ids == nil {
			k.ids = map[string]int64{}
		}
		if _, dup := k.ids[s.ID]; !dup {
			l.ids++
		}
		k.ids[s.ID] = at
	}
	return false
}

// sweep drops what covers only sessions past their absolute lifetime.
func (l *revocations) sweep(now time.Time, lifetime time.Duration) {
	l.swept = now
	ended := func(at int64) bool { return at != 0 && now.Sub(time.Unix(0, at)) > lifetime }
	if ended(l.all) {
		l.all = 0
	}
	for key, k := range l.keys {
		for id, at := range k.ids {
			if ended(at) {
				delete(k.ids, id)
				l.ids--
			}
		}
		if ended(k.before) {
			k.before = 0
		}
		if k.before == 0 && len(k.ids) == 0 {
			delete(l.keys, key)
		}
	}
}

func (l *revocations) revoked(s session) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	at := s.issuedAt()
	if at <= l.all {
		return true
	}
	k := l.keys[s.KeyID]
	if k == nil {
		return false
	}
	_, out := k.ids[s.ID]
	return out || at <= k.before
}

func maxIssued(ids map[string]int64) int64 {
	var m int64
	for _, at := range ids {
		m = max(m, at)
	}
	return m
}
