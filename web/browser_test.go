package web_test

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"rotor.sh/rotor/internal/leakcheck"
	"rotor.sh/rotor/storage"
)

// flashSays waits for the page that follows a form post: the one whose
// flash message says msg (the previous page may have a flash too).
func flashSays(msg string) chromedp.Action {
	return chromedp.WaitVisible(`p[data-flash=`+strconv.Quote(msg)+`]`, chromedp.ByQuery)
}

// flashHas waits for a flash that contains part.
func flashHas(part string) chromedp.Action {
	return chromedp.WaitVisible(`p[data-flash*=`+strconv.Quote(part)+`]`, chromedp.ByQuery)
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

// browser starts headless Chromium for the test.
func browser(t *testing.T) (context.Context, context.CancelFunc) {
	exe := chromiumPath(t)
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
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 4*time.Minute)
	return ctx, func() { cancelT(); cancelC(); cancelA() }
}

// TestDashboardInBrowser drives headless Chromium through every page with
// a real proxy and dispatcher behind the dashboard: sign in; create a
// secret, bind its hosts, rotate it; create queues; send test events (one
// delivered through the proxy, one refused by a closed port); open a job
// and replay it; create an API key; rotate the callback secrets; filter
// the audit log; define workflows, start runs from the dashboard, signal
// one to completion, retry a failed one, cancel one; an unknown path. Then
// every page at 1280 and at 390 px
// wide: screenshots (ROTOR_TEST_SCREENSHOTS keeps them), and no page
// wider than the window. No page ever shows a secret value.
func TestDashboardInBrowser(t *testing.T) {
	s := newStack(t)
	ctx, cancel := browser(t)
	defer cancel()
	srv := httptest.NewServer(s.dash)
	t.Cleanup(srv.Close)
	shots := os.Getenv("ROTOR_TEST_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	const value, rotated = "browser-canary-value-0123456789", "browser-rotated-value-9876543210"
	echoHost := strings.TrimPrefix(s.echo.URL, "http://")
	var html []string
	grab := chromedp.ActionFunc(func(ctx context.Context) error {
		var h string
		if err := chromedp.OuterHTML("html", &h).Do(ctx); err != nil {
			return err
		}
		html = append(html, h)
		return nil
	})
	run := func(what string, actions ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// waitAttempt reloads a job page until its first attempt shows.
	waitAttempt := func(path string) {
		t.Helper()
		for i := 0; ; i++ {
			var ok bool
			run("job page", chromedp.Navigate(srv.URL+path), chromedp.WaitVisible("main", chromedp.ByQuery),
				chromedp.Evaluate(`!!document.getElementById("attempt-1")`, &ok))
			if ok {
				return
			}
			if i == 100 {
				t.Fatalf("no attempt on %s", path)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	shot := func(name string) chromedp.Action {
		return chromedp.ActionFunc(func(ctx context.Context) error {
			var buf []byte
			if err := chromedp.FullScreenshot(&buf, 100).Do(ctx); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o644)
		})
	}
	var loc string
	location := chromedp.Location(&loc)
	run("sign in", chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(srv.URL+"/dashboard/"),
		chromedp.WaitVisible("#key", chromedp.ByID),
		chromedp.SendKeys("#key", s.ve.Key, chromedp.ByID),
		chromedp.Click("#signin", chromedp.ByID),
		chromedp.WaitVisible("#cards", chromedp.ByID))
	run("secret", chromedp.Navigate(srv.URL+"/dashboard/settings/secrets"),
		chromedp.WaitVisible("#create", chromedp.ByID),
		chromedp.SendKeys("#name", "BROWSER_TOKEN", chromedp.ByID),
		chromedp.SendKeys("#value", value, chromedp.ByID),
		chromedp.Click("#create-button", chromedp.ByID),
		flashSays("Created BROWSER_TOKEN"), grab,
		chromedp.SetValue("#hosts", echoHost+"\napi.example.com", chromedp.ByID),
		chromedp.Click("#save-hosts", chromedp.ByID),
		flashSays("Saved the allowed hosts of BROWSER_TOKEN"), grab,
		chromedp.SendKeys("#new-value", rotated, chromedp.ByID),
		chromedp.Click("#rotate", chromedp.ByID),
		flashSays("Rotated BROWSER_TOKEN"), grab)
	ref := "${{ secrets.BROWSER_TOKEN }}"
	for name, q := range map[string][2]string{"notifications": {s.echo.URL + "/notify?token=" + ref, "X-Api-Key: " + ref}, "broken": {s.refused, "X-Trace: dashboard"}} {
		run("queue "+name, chromedp.Navigate(srv.URL+"/dashboard/queues"),
			chromedp.WaitVisible("#queue-form", chromedp.ByID),
			chromedp.SendKeys(`#queue-form input[name="name"]`, name, chromedp.ByQuery),
			chromedp.SendKeys(`#queue-form input[name="callback_url"]`, q[0], chromedp.ByQuery),
			chromedp.SendKeys(`#queue-form textarea[name="headers"]`, q[1], chromedp.ByQuery),
			chromedp.Click(`#queue-form button`, chromedp.ByQuery),
			flashSays("Saved queue "+name), grab)
	}
	var jobs = map[string]string{}
	for _, name := range []string{"notifications", "broken"} {
		run("test event "+name, chromedp.Navigate(srv.URL+"/dashboard/queues/"+name+"/jobs"),
			chromedp.WaitVisible("#test-form", chromedp.ByID),
			chromedp.Click("#send-test", chromedp.ByID),
			flashSays("Sent a test event to "+name), location)
		path := strings.TrimPrefix(loc, srv.URL)
		path, _, _ = strings.Cut(path, "?")
		jobs[name] = path
		waitAttempt(path)
		run("grab", grab)
	}
	var attempt, broken string
	run("delivered job", chromedp.Navigate(srv.URL+jobs["notifications"]), chromedp.Text("#attempt-1", &attempt, chromedp.ByID), grab)
	if !strings.Contains(attempt, "200") || !strings.Contains(attempt, "token="+ref) || !strings.Contains(attempt, "X-Api-Key: "+ref) {
		t.Fatalf("delivered attempt:\n%s", attempt)
	}
	run("broken job", chromedp.Navigate(srv.URL+jobs["broken"]), chromedp.WaitVisible("#attempt-1", chromedp.ByID),
		chromedp.Evaluate(`document.getElementById("attempt-1").textContent`, &broken), grab)
	if !strings.Contains(broken, "connection refused") {
		t.Fatalf("refused attempt:\n%s", broken)
	}
	run("replay", chromedp.Navigate(srv.URL+jobs["notifications"]), chromedp.Click("#replay", chromedp.ByID), flashHas("Replayed"), grab)
	var newKey string
	run("api key", chromedp.Navigate(srv.URL+"/dashboard/settings/keys"),
		chromedp.SendKeys("#key-name", "ci-worker", chromedp.ByID),
		chromedp.Click("#create-key", chromedp.ByID),
		chromedp.WaitVisible("#new-key", chromedp.ByID), chromedp.Text("#new-key-value", &newKey, chromedp.ByID), shot("1280-keys-created"))
	if !strings.HasPrefix(newKey, "rtr_") {
		t.Fatalf("new key %q", newKey)
	}
	var callback string
	run("callback", chromedp.Navigate(srv.URL+"/dashboard/settings/callback"),
		chromedp.Click(`#rotate-callback-form input[name="confirm"]`, chromedp.ByQuery),
		chromedp.Click("#rotate-callback", chromedp.ByID),
		chromedp.WaitVisible("#new-secrets", chromedp.ByID), chromedp.Text("#new-callback", &callback, chromedp.ByID), shot("1280-callback-rotated"))
	if !strings.HasPrefix(callback, "rcs_") {
		t.Fatalf("new callback secret %q", callback)
	}
	var audit string
	run("audit", chromedp.Navigate(srv.URL+"/dashboard/audit?resource_type=secret&actor="+s.ve.Operator.KeyID),
		chromedp.WaitVisible("#audit", chromedp.ByID), chromedp.Text("#audit", &audit, chromedp.ByID), grab)
	for _, ev := range []string{"secret.created", "secret.rotated", "secret.updated"} {
		if !strings.Contains(audit, ev) || !strings.Contains(audit, "secret:BROWSER_TOKEN") {
			t.Fatalf("audit page lacks %s:\n%s", ev, audit)
		}
	}
	var refs, versions string
	run("secret page", chromedp.Navigate(srv.URL+"/dashboard/settings/secrets/BROWSER_TOKEN"),
		chromedp.Text("#references", &refs, chromedp.ByID), chromedp.Text("#versions", &versions, chromedp.ByID))
	if !strings.Contains(refs, "notifications") || !strings.Contains(versions, "2") {
		t.Fatalf("references %q versions %q", refs, versions)
	}
	// Workflows: one defined with the secret in a step, a run started from
	// the dashboard (JSON input), signaled from its page to completion;
	// another run fails against the closed port.
	s.putWorkflow(t, "onboard", onboardDef(s.echo.URL, "BROWSER_TOKEN"))
	s.putWorkflow(t, "broken", `{"steps":[{"id":"call","request":{"method":"POST","url":"`+s.refused+`","headers":{"X-Trace":"dashboard"}},"retry":{"max_attempts":1}}]}`)
	startRun := func(wf, input string) string {
		t.Helper()
		run("start "+wf, chromedp.Navigate(srv.URL+"/dashboard/workflows/"+wf),
			chromedp.WaitVisible("#start-form", chromedp.ByID),
			chromedp.SetValue("#run-input", input, chromedp.ByID),
			chromedp.Click("#start-run", chromedp.ByID),
			flashHas("Started run_"), location, grab)
		m := runIDRE.FindStringSubmatch(strings.TrimPrefix(loc, srv.URL))
		if m == nil {
			t.Fatalf("start %s: at %s", wf, loc)
		}
		return m[1]
	}
	runs := map[string]string{}
	runs["waiting"] = startRun("onboard", `{"user":"ada"}`)
	s.waitRun(t, runs["waiting"], storage.RunWaiting)
	run("waiting run", chromedp.Navigate(srv.URL+"/dashboard/workflow-runs/"+runs["waiting"]), chromedp.WaitVisible("#timeline", chromedp.ByID), grab)
	runs["completed"] = startRun("onboard", `{"user":"grace"}`)
	s.waitRun(t, runs["completed"], storage.RunWaiting)
	run("signal", chromedp.Navigate(srv.URL+"/dashboard/workflow-runs/"+runs["completed"]),
		chromedp.WaitVisible("#signal-form", chromedp.ByID),
		chromedp.SetValue("#signal-data", `{"user":"grace"}`, chromedp.ByID),
		chromedp.Click("#send-signal", chromedp.ByID),
		flashSays("Sent the signal approved"), grab)
	s.waitRun(t, runs["completed"], storage.RunCompleted)
	runs["failed"] = startRun("broken", `{}`)
	s.waitRun(t, runs["failed"], storage.RunFailed)
	var timeline string
	run("completed run", chromedp.Navigate(srv.URL+"/dashboard/workflow-runs/"+runs["completed"]), chromedp.Text("#timeline", &timeline, chromedp.ByID), grab)
	if !strings.Contains(timeline, "notify") || !strings.Contains(timeline, "200") || !strings.Contains(timeline, `"by":"grace"`) {
		t.Fatalf("completed timeline:\n%s", timeline)
	}
	run("failed run", chromedp.Navigate(srv.URL+"/dashboard/workflow-runs/"+runs["failed"]), chromedp.Text("#timeline", &timeline, chromedp.ByID), grab)
	if !strings.Contains(timeline, "could not connect") {
		t.Fatalf("failed timeline:\n%s", timeline)
	}
	run("retry", chromedp.Click("#retry-run", chromedp.ByID), flashHas("Retried "+runs["failed"]), grab)
	s.waitRun(t, runs["failed"], storage.RunFailed)
	runs["canceled"] = startRun("onboard", `{"user":"bob"}`)
	s.waitRun(t, runs["canceled"], storage.RunWaiting)
	run("cancel", chromedp.Navigate(srv.URL+"/dashboard/workflow-runs/"+runs["canceled"]),
		chromedp.Click(`#cancel-form input[name="confirm"]`, chromedp.ByQuery),
		chromedp.Click("#cancel-run", chromedp.ByID), flashHas("Canceled "+runs["canceled"]), grab)
	run("secret refs", chromedp.Navigate(srv.URL+"/dashboard/settings/secrets/BROWSER_TOKEN"), chromedp.Text("#references", &refs, chromedp.ByID))
	if !strings.Contains(refs, "onboard") || strings.Contains(refs, "broken") {
		t.Fatalf("references: want onboard, not broken: %q", refs)
	}
	// Every page at both widths.
	pages := []struct{ name, path string }{
		{"workflow", "/dashboard/workflows/onboard"}, {"run-waiting", "/dashboard/workflow-runs/" + runs["waiting"]},
		{"run-completed", "/dashboard/workflow-runs/" + runs["completed"]}, {"run-failed", "/dashboard/workflow-runs/" + runs["failed"]},
		{"run-canceled", "/dashboard/workflow-runs/" + runs["canceled"]},
		{"overview", "/dashboard/"}, {"queues", "/dashboard/queues"}, {"jobs", "/dashboard/queues/notifications/jobs"},
		{"job-delivered", jobs["notifications"]}, {"job-refused", jobs["broken"]}, {"secrets", "/dashboard/settings/secrets"},
		{"secret", "/dashboard/settings/secrets/BROWSER_TOKEN"}, {"keys", "/dashboard/settings/keys"}, {"callback", "/dashboard/settings/callback"},
		{"audit", "/dashboard/audit"}, {"workflows", "/dashboard/workflows"}, {"notfound", "/dashboard/no-such-page"},
	}
	for _, w := range []int64{1280, 390} {
		for _, p := range pages {
			var buf []byte
			var scrollW int64
			run(p.name, chromedp.EmulateViewport(w, 900), chromedp.Navigate(srv.URL+p.path), chromedp.WaitVisible("main", chromedp.ByQuery),
				chromedp.Evaluate(`document.documentElement.scrollWidth`, &scrollW), chromedp.FullScreenshot(&buf, 100), grab)
			if err := os.WriteFile(filepath.Join(shots, strconv.FormatInt(w, 10)+"-"+p.name+".png"), buf, 0o644); err != nil {
				t.Fatal(err)
			}
			if scrollW > w {
				t.Errorf("%s at %d px: the page is %d px wide (scrolls sideways)", p.name, w, scrollW)
			}
		}
	}
	var overview string
	run("overview", chromedp.Navigate(srv.URL+"/dashboard/"), chromedp.Text("main", &overview, chromedp.ByQuery))
	if !strings.Contains(overview, "verified") || !strings.Contains(overview, "resolved") {
		t.Fatalf("overview lacks the audit status or the proxy outcomes:\n%s", overview)
	}
	all := []byte(strings.Join(html, "\n"))
	leakcheck.Scan(t, value, map[string][]byte{"pages": all, "logs": []byte(s.ve.Logs.String())})
	leakcheck.Scan(t, rotated, map[string][]byte{"pages": all, "logs": []byte(s.ve.Logs.String())})
	// The shown-once values appear on no page grabbed after their own.
	leakcheck.Scan(t, newKey, map[string][]byte{"later pages": all})
	leakcheck.Scan(t, callback, map[string][]byte{"later pages": all})
	t.Logf("screenshots in %s", shots)
}
