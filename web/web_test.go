package web_test

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/internal/leakcheck"
	"rotor.sh/rotor/vault/vaulttest"
	"rotor.sh/rotor/web"
)

func newServer(t *testing.T) (*httptest.Server, *vaulttest.Env) {
	t.Helper()
	ve := vaulttest.New(t)
	d, err := web.New(web.Options{Vault: ve.Vault, Queues: dispatch.NewService(ve.Store, ve.Vault, nil, nil), Logger: ve.Logger})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	return srv, ve
}

// TestCSRFAndSession: forms need the session's CSRF token, pages need a
// session, and the cookie is HttpOnly and SameSite=Strict.
func TestCSRFAndSession(t *testing.T) {
	srv, ve := newServer(t)
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c := &http.Client{CheckRedirect: noRedirect}
	res, _ := c.Get(srv.URL + "/dashboard/settings/secrets")
	if res.StatusCode != 303 || res.Header.Get("Location") != "/dashboard/login" {
		t.Fatalf("unauthenticated page: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	res, _ = c.PostForm(srv.URL+"/dashboard/login", url.Values{"key": {"wrong"}})
	if res.StatusCode != 401 {
		t.Fatalf("bad key: %d", res.StatusCode)
	}
	res, _ = c.PostForm(srv.URL+"/dashboard/login", url.Values{"key": {ve.Key}})
	ck := res.Header.Get("Set-Cookie")
	if res.StatusCode != 303 || !strings.Contains(ck, "HttpOnly") || !strings.Contains(ck, "SameSite=Strict") {
		t.Fatalf("login: %d %q", res.StatusCode, ck)
	}
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(srv.URL + "/dashboard/")
	jar.SetCookies(u, res.Cookies())
	c.Jar = jar
	// A form post without the token (a cross-site forgery) is refused.
	res, _ = c.PostForm(srv.URL+"/dashboard/settings/secrets", url.Values{"name": {"FORGED"}, "value": {"x"}})
	if res.StatusCode != 403 {
		t.Fatalf("post without CSRF token: %d", res.StatusCode)
	}
	if list, _ := ve.Vault.ListSecrets(context.Background(), ve.Operator); len(list) != 0 {
		t.Fatal("a forged form created a secret")
	}
	res, _ = c.Get(srv.URL + "/dashboard/settings/secrets")
	if res.StatusCode != 200 || res.Header.Get("X-Frame-Options") != "DENY" || res.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("secrets page: %d %v", res.StatusCode, res.Header)
	}
}

// flashSays waits for the page that follows a form post: the one whose
// flash message says msg (the previous page may have a flash too).
func flashSays(msg string) chromedp.Action {
	return chromedp.WaitVisible(`p[data-flash=`+strconv.Quote(msg)+`]`, chromedp.ByQuery)
}

func chromiumPath(t *testing.T) string {
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is required in CI (make test installs it)")
	}
	t.Skip("no chromium")
	return ""
}

// TestDashboardInBrowser drives headless Chromium: sign in, create, rotate
// and delete a secret, and find all three in the audit page. Screenshots
// are saved in the test's temp dir. No page ever shows the value.
func TestDashboardInBrowser(t *testing.T) {
	exe := chromiumPath(t)
	srv, ve := newServer(t)
	// Screenshots go to the test's temp dir, or to ROTOR_TEST_SCREENSHOTS to keep them.
	shots := os.Getenv("ROTOR_TEST_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	// Chromium may still write its profile while it exits: remove it with
	// retries rather than with t.TempDir's single attempt.
	profile, err := os.MkdirTemp("", "rotor-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("no-first-run", true), chromedp.UserDataDir(profile))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	const value, rotated = "browser-canary-value-0123456789", "browser-rotated-value-9876543210"
	var html []string
	shot := func(name string) chromedp.Action {
		return chromedp.ActionFunc(func(ctx context.Context) error {
			var buf []byte
			if err := chromedp.FullScreenshot(&buf, 100).Do(ctx); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o644)
		})
	}
	grab := chromedp.ActionFunc(func(ctx context.Context) error {
		var h string
		if err := chromedp.OuterHTML("html", &h).Do(ctx); err != nil {
			return err
		}
		html = append(html, h)
		return nil
	})
	var flash, audit string
	err = chromedp.Run(ctx,
		chromedp.Navigate(srv.URL+"/dashboard/"),
		chromedp.WaitVisible("#key", chromedp.ByID),
		chromedp.SendKeys("#key", ve.Key, chromedp.ByID),
		chromedp.Click("#signin", chromedp.ByID),
		chromedp.WaitVisible("#create", chromedp.ByID), shot("1-signed-in"),
		chromedp.SendKeys("#name", "BROWSER_TOKEN", chromedp.ByID),
		chromedp.SendKeys("#value", value, chromedp.ByID),
		chromedp.Click("#create-button", chromedp.ByID),
		chromedp.WaitVisible("#secret-BROWSER_TOKEN", chromedp.ByID), chromedp.Text("#flash", &flash, chromedp.ByID), grab, shot("2-created"),
		chromedp.SendKeys(`#secret-BROWSER_TOKEN input[name="value"]`, rotated, chromedp.ByQuery),
		chromedp.Click(`#secret-BROWSER_TOKEN button[name="rotate"]`, chromedp.ByQuery),
		flashSays("Rotated BROWSER_TOKEN"), grab, shot("3-rotated"),
		chromedp.Click(`#secret-BROWSER_TOKEN input[name="confirm"]`, chromedp.ByQuery),
		chromedp.Click(`#secret-BROWSER_TOKEN button[name="delete"]`, chromedp.ByQuery),
		flashSays("Deleted BROWSER_TOKEN"), grab, shot("4-deleted"),
		chromedp.Navigate(srv.URL+"/dashboard/audit?resource_type=secret"),
		chromedp.WaitVisible("#audit", chromedp.ByID), chromedp.Text("#audit", &audit, chromedp.ByID), grab, shot("5-audit"),
	)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(flash, "Created BROWSER_TOKEN") {
		t.Fatalf("flash %q", flash)
	}
	for _, ev := range []string{"secret.created", "secret.rotated", "secret.deleted"} {
		if !strings.Contains(audit, ev) || !strings.Contains(audit, "secret:BROWSER_TOKEN") {
			t.Fatalf("audit page lacks %s:\n%s", ev, audit)
		}
	}
	if list, _ := ve.Vault.ListSecrets(context.Background(), ve.Operator); len(list) != 0 {
		t.Fatal("the secret was not deleted")
	}
	pages := []byte(strings.Join(html, "\n"))
	leakcheck.Scan(t, value, map[string][]byte{"pages": pages, "logs": []byte(ve.Logs.String())})
	leakcheck.Scan(t, rotated, map[string][]byte{"pages": pages, "logs": []byte(ve.Logs.String())})
	t.Logf("screenshots in %s", shots)
}
