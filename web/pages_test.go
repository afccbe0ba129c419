package web_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/internal/leakcheck"
	"rotor.sh/rotor/proxy"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
	"rotor.sh/rotor/vault/vaulttest"
	"rotor.sh/rotor/web"
	"rotor.sh/rotor/workflow"
)

// stack is a dashboard in front of a real proxy and dispatcher delivering
// to loopback handlers: the parts `rotor serve` wires together.
type stack struct {
	ve  *vaulttest.Env
	svc *dispatch.Service
	// flows is the workflow service; an engine runs its steps through the
	// same proxy.
	flows *workflow.Service
	dash  http.Handler
	echo  *httptest.Server
	// refused is a loopback URL nothing listens on.
	refused string
}

func newStack(t *testing.T) *stack {
	t.Helper()
	s := &stack{ve: vaulttest.New(t)}
	// An echo handler: answers with what it received, as `rotor dev echo`
	// prints it (the proxy scrubs resolved values from the answer).
	s.echo = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Echo-Key", r.Header.Get("X-Api-Key"))
		_, _ = io.WriteString(w, r.Method+" "+r.URL.RequestURI()+"\nX-Api-Key: "+r.Header.Get("X-Api-Key")+"\n\n"+string(body))
	}))
	t.Cleanup(s.echo.Close)
	p, err := proxy.New(proxy.Options{Vault: s.ve.Vault, Logger: s.ve.Logger, Registerer: s.ve.Registry, InternalToken: "web-test-internal"})
	if err != nil {
		t.Fatal(err)
	}
	psrv := httptest.NewServer(p)
	t.Cleanup(psrv.Close)
	disp, err := dispatch.New(dispatch.Options{Store: s.ve.Store, Actors: s.ve.Vault, ProxyURL: psrv.URL, InternalToken: "web-test-internal", Logger: s.ve.Logger,
		Registerer: s.ve.Registry, PollInterval: 5 * time.Millisecond, Visibility: time.Minute, Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = disp.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if _, err := s.ve.Vault.RotateCallbackCredentials(context.Background(), s.ve.Operator); err != nil {
		t.Fatal(err)
	}
	eng, err := workflow.NewEngine(workflow.Options{Store: s.ve.Store, Actors: s.ve.Vault, ProxyURL: psrv.URL, InternalToken: "web-test-internal", Logger: s.ve.Logger,
		Registerer: s.ve.Registry, PollInterval: 5 * time.Millisecond, Visibility: time.Minute, Workers: 4, SignAudit: s.ve.Vault.SignAudit})
	if err != nil {
		t.Fatal(err)
	}
	engDone := make(chan struct{})
	go func() { defer close(engDone); _ = eng.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-engDone })
	s.svc = dispatch.NewService(s.ve.Store, s.ve.Vault, nil, disp.Notify)
	s.flows = workflow.NewService(s.ve.Store, s.ve.Vault, nil, nil, eng.Notify)
	if s.dash, err = web.New(web.Options{Vault: s.ve.Vault, Queues: s.svc, Logger: s.ve.Logger, Metrics: s.ve.Registry, Workflows: s.flows}); err != nil {
		t.Fatal(err)
	}
	s.refused = "http://" + closedAddr(t) + "/hook"
	return s
}

func closedAddr(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.Listener.Addr().String()
	srv.Close()
	return addr
}

// client is a signed-in form client of the dashboard.
type client struct {
	t    *testing.T
	h    http.Handler
	ck   *http.Cookie
	csrf string
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

func signIn(t *testing.T, h http.Handler, key string) *client {
	t.Helper()
	c := &client{t: t, h: h, ck: sessionCookie(t, do(h, "POST", "/dashboard/login", url.Values{"key": {key}}, nil))}
	_, body := c.get("/dashboard/queues")
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token on the page:\n%s", body)
	}
	c.csrf = m[1]
	return c
}

func (c *client) get(path string) (*http.Response, string) {
	c.t.Helper()
	res := do(c.h, "GET", path, nil, c.ck)
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func (c *client) post(path string, form url.Values) (*http.Response, string) {
	c.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", c.csrf)
	}
	res := do(c.h, "POST", path, form, c.ck)
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// TestPagesRolesAndCSRF: every page answers for an operator; a member gets
// no key or callback pages (403, and no nav entry), cannot create keys;
// every new form refuses a POST without the CSRF token.
func TestPagesRolesAndCSRF(t *testing.T) {
	s := newStack(t)
	s.ve.Secret(t, "NOTIFY_TOKEN", "canary-role-value-12345")
	if _, err := s.svc.CreateQueue(context.Background(), s.ve.Operator, "q", dispatch.QueueSpec{CallbackURL: ptr(s.echo.URL + "/x")}); err != nil {
		t.Fatal(err)
	}
	j, _, err := s.svc.Enqueue(context.Background(), s.ve.Operator, "q", dispatch.EnqueueRequest{Payload: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	op := signIn(t, s.dash, s.ve.Key)
	for _, p := range []string{"/dashboard/", "/dashboard/queues", "/dashboard/queues/q/jobs", "/dashboard/jobs/" + j.ID, "/dashboard/settings/secrets",
		"/dashboard/settings/secrets/NOTIFY_TOKEN", "/dashboard/settings/keys", "/dashboard/settings/callback", "/dashboard/audit", "/dashboard/workflows"} {
		if res, body := op.get(p); res.StatusCode != 200 || !strings.Contains(body, "<h1>") {
			t.Errorf("operator GET %s: %d", p, res.StatusCode)
		}
	}
	_, member, err := s.ve.Vault.CreateAPIKey(context.Background(), s.ve.Operator, vault.CreateAPIKeyRequest{Name: "dev", Role: vault.RoleMember})
	if err != nil {
		t.Fatal(err)
	}
	m := signIn(t, s.dash, member)
	if _, body := m.get("/dashboard/"); strings.Contains(body, "/dashboard/settings/keys") {
		t.Error("a member's nav links the API keys page")
	}
	for _, p := range []string{"/dashboard/settings/keys", "/dashboard/settings/callback"} {
		if res, body := m.get(p); res.StatusCode != http.StatusForbidden || !strings.Contains(body, `id="error"`) {
			t.Errorf("member GET %s: %d", p, res.StatusCode)
		}
	}
	if res, _ := m.post("/dashboard/settings/keys", url.Values{"name": {"sneaky"}, "role": {"admin"}}); res.StatusCode != http.StatusForbidden {
		t.Errorf("member creates a key: %d", res.StatusCode)
	}
	if res, _ := m.post("/dashboard/settings/callback/rotate", url.Values{"confirm": {"yes"}, "grace": {"0s"}}); res.StatusCode != http.StatusForbidden {
		t.Errorf("member rotates the callback secret: %d", res.StatusCode)
	}
	if keys, _ := s.ve.Vault.ListAPIKeys(context.Background(), s.ve.Operator); len(keys) != 2 {
		t.Fatalf("%d keys after a member's attempts, want 2", len(keys))
	}
	// Without the token: refused, nothing done.
	for _, p := range []string{"/dashboard/jobs/" + j.ID + "/replay", "/dashboard/queues/q/test", "/dashboard/settings/keys",
		"/dashboard/settings/callback/rotate", "/dashboard/settings/secrets/NOTIFY_TOKEN/hosts", "/dashboard/settings/callback/hosts"} {
		if res := do(s.dash, "POST", p, url.Values{"name": {"x"}, "confirm": {"yes"}, "grace": {"0s"}, "hosts": {"evil.test"}}, op.ck); res.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s without CSRF: %d", p, res.StatusCode)
		}
	}
	if page, _ := s.svc.ListJobs(context.Background(), s.ve.Operator, storage.JobQuery{Queue: "q"}); len(page.Jobs) != 1 {
		t.Fatalf("%d jobs after forged posts, want 1", len(page.Jobs))
	}
	if meta, _ := s.ve.Vault.GetSecret(context.Background(), s.ve.Operator, "NOTIFY_TOKEN"); len(meta.AllowedHosts) != 0 {
		t.Fatalf("a forged post set hosts %v", meta.AllowedHosts)
	}
}

// TestNotFoundStyled: unknown dashboard paths get the dashboard's own 404
// page, signed in (with the nav) or not.
func TestNotFoundStyled(t *testing.T) {
	s := newStack(t)
	res := do(s.dash, "GET", "/dashboard/no/such/page", nil, nil)
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 404 || !strings.Contains(string(body), `id="notfound"`) || !strings.Contains(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("signed out: %d %s", res.StatusCode, body)
	}
	c := signIn(t, s.dash, s.ve.Key)
	res, page := c.get("/dashboard/nope")
	if res.StatusCode != 404 || !strings.Contains(page, `id="notfound"`) || !strings.Contains(page, "Sign out") {
		t.Fatalf("signed in: %d %s", res.StatusCode, page)
	}
	if res, page := c.get("/dashboard/jobs/job_missing"); res.StatusCode != 404 || !strings.Contains(page, `id="error"`) {
		t.Fatalf("unknown job: %d", res.StatusCode)
	}
}

// TestShownOnce: a new API key and rotated callback secrets appear in the
// response that creates them and on no later page; secret values never
// appear at all (canary over every page, the logs and the bbolt file).
func TestShownOnce(t *testing.T) {
	s := newStack(t)
	c := signIn(t, s.dash, s.ve.Key)
	const value, rotated = "canary-dash-value-0123456789", "canary-dash-rotated-9876543210"
	var pages []string
	keep := func(_ *http.Response, body string) string { pages = append(pages, body); return body }
	keep(c.post("/dashboard/settings/secrets", url.Values{"name": {"NOTIFY_TOKEN"}, "value": {value}}))
	keep(c.post("/dashboard/settings/secrets/NOTIFY_TOKEN/rotate", url.Values{"value": {rotated}}))
	// A failed rotation (empty value) re-renders the page: still no value.
	keep(c.post("/dashboard/settings/secrets/NOTIFY_TOKEN/rotate", url.Values{"value": {""}}))
	keep(c.post("/dashboard/settings/secrets", url.Values{"name": {"bad name"}, "value": {value}}))
	url1 := s.echo.URL + "/hook?token=${{ secrets.NOTIFY_TOKEN }}"
	keep(c.post("/dashboard/queues", url.Values{"name": {"q"}, "callback_url": {url1}, "headers": {"X-Api-Key: ${{ secrets.NOTIFY_TOKEN }}"}}))
	res, _ := c.post("/dashboard/queues/q/test", url.Values{"payload": {`{"t":"${{ secrets.NOTIFY_TOKEN }}"}`}})
	loc := res.Header.Get("Location")
	if res.StatusCode != 303 || !strings.HasPrefix(loc, "/dashboard/jobs/job_") {
		t.Fatalf("test event: %d %q", res.StatusCode, loc)
	}
	jobURL, _, _ := strings.Cut(loc, "?")
	var job string
	for i := 0; ; i++ {
		_, job = c.get(jobURL)
		if strings.Contains(job, `id="attempt-1"`) {
			break
		}
		if i == 500 {
			t.Fatalf("no attempt shown:\n%s", job)
		}
		time.Sleep(10 * time.Millisecond)
	}
	keep(nil, job)
	// The echo's answer is shown scrubbed: the reference, not the value.
	if !strings.Contains(job, "token=${{ secrets.NOTIFY_TOKEN }}") && !strings.Contains(job, "token=$%7B%7B") {
		t.Fatalf("job page lacks the scrubbed echo:\n%s", job)
	}
	_, created := c.post("/dashboard/settings/keys", url.Values{"name": {"worker"}, "role": {"member"}})
	key := regexp.MustCompile(`id="new-key-value">([^<]+)<`).FindStringSubmatch(created)
	if key == nil || !strings.HasPrefix(key[1], "rtr_") {
		t.Fatalf("the new key is not shown:\n%s", created)
	}
	if _, err := s.ve.Vault.Authenticate(context.Background(), key[1]); err != nil {
		t.Fatalf("the shown key does not work: %v", err)
	}
	_, rot := c.post("/dashboard/settings/callback/rotate", url.Values{"confirm": {"yes"}, "grace": {"1h"}, "only": {""}})
	cs := regexp.MustCompile(`id="new-callback">([^<]+)<`).FindStringSubmatch(rot)
	ss := regexp.MustCompile(`id="new-signing">([^<]+)<`).FindStringSubmatch(rot)
	if cs == nil || ss == nil {
		t.Fatalf("rotated secrets not shown:\n%s", rot)
	}
	// Every later page: none of them.
	var later []string
	for _, p := range []string{"/dashboard/", "/dashboard/settings/keys", "/dashboard/settings/callback", "/dashboard/audit", "/dashboard/settings/secrets",
		"/dashboard/settings/secrets/NOTIFY_TOKEN", "/dashboard/queues", "/dashboard/queues/q/jobs", jobURL} {
		_, b := c.get(p)
		later = append(later, b)
	}
	all := []byte(strings.Join(append(pages, later...), "\n"))
	laterB := []byte(strings.Join(later, "\n"))
	where := map[string][]byte{"pages": all, "logs": []byte(s.ve.Logs.String())}
	leakcheck.Scan(t, value, where)
	leakcheck.Scan(t, rotated, where)
	for name, v := range map[string]string{"API key": key[1], "callback secret": cs[1], "signing secret": ss[1]} {
		leakcheck.Scan(t, v, map[string][]byte{"later pages (" + name + ")": laterB})
	}
}

func ptr[T any](v T) *T { return &v }

// TestJobsPagedAndTestEvent: 50 jobs a page with an Older link that
// continues without repeats; a test event with a bad payload is refused
// next to the form, which keeps what was typed.
func TestJobsPagedAndTestEvent(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	if _, err := s.svc.CreateQueue(ctx, s.ve.Operator, "q", dispatch.QueueSpec{CallbackURL: ptr(s.echo.URL + "/x")}); err != nil {
		t.Fatal(err)
	}
	for range 55 {
		if _, _, err := s.svc.Enqueue(ctx, s.ve.Operator, "q", dispatch.EnqueueRequest{Payload: json.RawMessage(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	c := signIn(t, s.dash, s.ve.Key)
	idRE := regexp.MustCompile(`<a href="/dashboard/jobs/(job_[0-9a-f]+)">`)
	_, first := c.get("/dashboard/queues/q/jobs")
	older := regexp.MustCompile(`id="older" href="([^"]+)"`).FindStringSubmatch(first)
	if older == nil {
		t.Fatal("no Older link on a full page")
	}
	_, second := c.get("/dashboard/queues/q/jobs" + strings.ReplaceAll(older[1], "&amp;", "&"))
	ids := map[string]bool{}
	for _, page := range []string{first, second} {
		for _, m := range idRE.FindAllStringSubmatch(page, -1) {
			if ids[m[1]] {
				t.Fatalf("%s on both pages", m[1])
			}
			ids[m[1]] = true
		}
	}
	if len(ids) != 55 {
		t.Fatalf("%d jobs over two pages, want 55", len(ids))
	}
	res, body := c.post("/dashboard/queues/q/test", url.Values{"payload": {`{"not json`}})
	if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `id="error"`) || !strings.Contains(body, "{&#34;not json") {
		t.Fatalf("bad test payload: %d\n%s", res.StatusCode, body)
	}
	if res, _ := c.post("/dashboard/queues/nope/test", url.Values{"payload": {`{}`}}); res.StatusCode != http.StatusNotFound {
		t.Fatalf("test event to an unknown queue: %d", res.StatusCode)
	}
}
