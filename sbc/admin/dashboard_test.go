package admin

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/testpeer"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

func TestDashboardFiles(t *testing.T) {
	e := newEnv(t)
	for _, f := range []struct{ path, ctype string }{
		{"/dashboard/", "text/html"}, {"/dashboard/app.js", "text/javascript"}, {"/dashboard/app.css", "text/css"},
	} {
		r := e.do("GET", f.path, "", nil)
		wantStatus(t, r, http.StatusOK)
		if !strings.HasPrefix(r.header.Get("Content-Type"), f.ctype) {
			t.Errorf("%s: Content-Type %q", f.path, r.header.Get("Content-Type"))
		}
		if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") ||
			!strings.Contains(csp, "connect-src 'self'") {
			t.Errorf("%s: CSP %q", f.path, csp)
		}
		if strings.Contains(string(r.body), "http://") && f.path != "/dashboard/app.js" || strings.Contains(string(r.body), "https://") {
			t.Errorf("%s refers to another site", f.path)
		}
	}
	wantStatus(t, e.do("GET", "/dashboard/nope.js", "", nil), http.StatusNotFound)
}

// TestDashboardInBrowser logs in to the dashboard in headless Chromium, sees a registered room,
// then sees a refusal arrive over the live stream and appear in the chart, and saves a
// screenshot (in $PORTCULLIS_ARTIFACTS, else the test's temporary directory).
func TestDashboardInBrowser(t *testing.T) {
	chromium := testpeer.Require(t, "chromium")
	e := newEnv(t)
	e.propose(state.PutRoom(state.Room{Name: "boardroom", Inbound: state.InboundAllowlist, Allow: []string{"*@partner.example"}}))
	e.propose(state.PutRoom(state.Room{Name: "lobby", Inbound: state.InboundOpen}))
	e.propose(state.PutBinding(state.Binding{Room: "boardroom", Contact: "sip:boardroom@192.0.2.10:5060", Source: "192.0.2.10:5060",
		Transport: "TLS", Node: "edge1", UserAgent: "Poly G7500/4.0", Expires: time.Now().Add(time.Hour)}))
	e.propose(state.PutBan(state.Ban{Prefix: mustPrefix("203.0.113.0/24"), Rule: guard.RuleFlood, Reason: "flood", Strikes: 1,
		Created: time.Now(), Until: time.Now().Add(time.Hour)}))
	e.propose(state.PutCall(state.Call{ID: "c1", Room: "boardroom", Direction: state.Inbound, From: "sip:alice@partner.example",
		Node: "edge1", State: state.CallAnswered, Started: time.Now().Add(-time.Minute), Answered: time.Now().Add(-50 * time.Second)}))
	e.calls.media["c1"] = []map[string]any{{"media": "audio", "a_to_b": map[string]any{"packets": 2500, "lost": 3, "jitter_ms": 4.5},
		"b_to_a": map[string]any{"packets": 2490, "lost": 0, "jitter_ms": 3.1}}}
	e.events.push(guard.Event{Time: time.Now().Add(-2 * time.Hour), Source: "198.51.100.7:5060", Rule: guard.RuleGhostCall,
		Action: guard.Drop, Reason: "INVITE to our IP address"})

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.WindowSize(1400, 1300), chromedp.Flag("disable-gpu", true))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 45*time.Second)
	defer cancelT()

	// Any script error or CSP violation fails the test.
	var mu sync.Mutex
	var problems []string
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			problems = append(problems, "exception: "+msg)
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError && !strings.Contains(ev.Entry.Text, "401") {
				problems = append(problems, "console: "+ev.Entry.Text)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(css(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}

	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.http.URL+"/dashboard/"),
		chromedp.WaitVisible(css("#token")),
		chromedp.SendKeys(css("#token"), "pct_not-a-token"),
		chromedp.Click(css("#login-button")),
		chromedp.Poll[chromedp.Void](`document.getElementById("login-error").textContent.length > 0`),
	); err != nil {
		t.Fatal(err)
	}
	if msg := text("#login-error"); !strings.Contains(msg, "token") {
		t.Fatalf("bad token message %q", msg)
	}

	if err := chromedp.Do(ctx,
		chromedp.SendKeys(css("#token"), e.read),
		chromedp.Click(css("#login-button")),
		chromedp.WaitVisible(css(`body[data-loaded="true"]`)),
		chromedp.WaitVisible(css(`#chart rect[data-rule="ghost-call"]`)),
	); err != nil {
		mu.Lock()
		t.Fatalf("%v; browser problems: %v", err, problems)
	}
	regs := text("#registrations tbody")
	for _, want := range []string{"boardroom", "registered", "192.0.2.10", "Poly G7500", "lobby", "not registered"} {
		if !strings.Contains(regs, want) {
			t.Errorf("registrations lack %q: %q", want, regs)
		}
	}
	if calls := text("#calls tbody"); !strings.Contains(calls, "alice@partner.example") || !strings.Contains(calls, "audio: 4990 pkts") {
		t.Errorf("calls %q", calls)
	}
	if bans := text("#bans tbody"); !strings.Contains(bans, "203.0.113.0/24") {
		t.Errorf("bans %q", bans)
	}

	// A refusal now: it arrives over the live stream and lands in the chart at once.
	deadline := time.Now().Add(30 * time.Second)
	for e.events.subscribers() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the dashboard never opened the event stream")
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.events.push(guard.Event{Time: time.Now(), Source: "203.0.113.66:5060", Transport: "UDP", Method: "INVITE",
		UserAgent: "friendly-scanner", Rule: guard.RuleScanner, Action: guard.Drop, Reason: "SIP scanner (friendly-scanner)"})
	bar := css(`#chart rect[data-rule="scanner-user-agent"]`)
	if err := chromedp.Do(ctx, chromedp.WaitVisible(bar)); err != nil {
		t.Fatal(err)
	}
	count, err := chromedp.Run(ctx, chromedp.AttributeValue(bar, "data-count"))
	if err != nil {
		t.Fatal(err)
	}
	feed, legend := text("#feed tbody"), text("#legend")
	if count.Value != "1" || !strings.Contains(feed, "203.0.113.66") || !strings.Contains(legend, "scanner-user-agent (1)") {
		t.Fatalf("chart count %q, feed %q, legend %q", count.Value, feed, legend)
	}

	saveShot(t, ctx, "dashboard.png")

	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Fatalf("browser problems:\n%s", strings.Join(problems, "\n"))
	}
}
