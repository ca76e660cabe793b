package admin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/testpeer"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

// browser is one headless Chromium for a test; tab opens a logged-in dashboard of an env.
type browser struct {
	t     *testing.T
	alloc context.Context
	mu    sync.Mutex
	bad   []string // script exceptions
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	chromium := testpeer.Require(t, "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	b := &browser{t: t, alloc: actx}
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if len(b.bad) > 0 {
			t.Errorf("browser problems:\n%s", strings.Join(b.bad, "\n"))
		}
	})
	return b
}

// tab opens the dashboard of e in a new tab (its own session storage) at width x height and
// logs in with the read token; it returns once the first refresh has rendered.
func (b *browser) tab(e *env, width, height int64) context.Context {
	t := b.t
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.alloc)
	t.Cleanup(cancel)
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancelT)
	if err := chromedp.Listen(ctx, func(ev any) {
		if ev, ok := ev.(*runtime.EventExceptionThrown); ok {
			b.mu.Lock()
			b.bad = append(b.bad, "exception: "+ev.ExceptionDetails.Text)
			b.mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(width, height),
		chromedp.Navigate(e.http.URL+"/dashboard/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), e.read),
		chromedp.Click(chromedp.CSS("#login-button")),
		chromedp.WaitVisible(chromedp.CSS(`body[data-loaded="true"]`)),
	); err != nil {
		t.Fatal(err)
	}
	return ctx
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

// TestDashboardNodeDown: when the node stops answering, the header no longer shows a green
// "healthy" pill next to "update failed" and "reconnecting": it says the node is unreachable.
func TestDashboardNodeDown(t *testing.T) {
	b := newBrowser(t)
	e := newEnv(t)
	ctx := b.tab(e, 1200, 900)
	if got := eval[string](t, ctx, `document.getElementById("health").textContent`); got != "healthy" {
		t.Fatalf("health pill %q while the node is up", got)
	}
	e.srv.Close()
	e.http.CloseClientConnections()
	e.http.Close()
	if err := chromedp.Do(ctx, chromedp.Poll[chromedp.Void](
		`document.getElementById("updated").textContent.includes("update failed")`,
		chromedp.WithPollingTimeout(60*time.Second))); err != nil {
		t.Fatalf("the dashboard never noticed the node is down: %v", err)
	}
	pill := eval[map[string]string](t, ctx, `(() => { const h = document.getElementById("health");
		return {text: h.textContent, cls: h.className}; })()`)
	if pill["text"] == "healthy" || strings.Contains(pill["cls"], "ok") || !strings.Contains(pill["cls"], "bad") {
		t.Fatalf("node down, health pill %q (class %q)", pill["text"], pill["cls"])
	}
}

// TestDashboardCallHistory: the call history view lists the call records, newest first.
func TestDashboardCallHistory(t *testing.T) {
	b := newBrowser(t)
	e := newEnv(t)
	base := time.Now().Add(-time.Hour)
	for i, room := range []string{"boardroom", "lobby", "huddle"} {
		e.propose(state.EndCall(state.CallRecord{Call: state.Call{ID: fmt.Sprint("rec", i), Room: room, Direction: state.Inbound,
			From: "sip:caller" + fmt.Sprint(i) + "@partner.example", Started: base.Add(time.Duration(i) * time.Minute)},
			Ended: base.Add(time.Duration(i)*time.Minute + 90*time.Second), Duration: 90 * time.Second, EndReason: "bye", Status: 200}))
	}
	ctx := b.tab(e, 1400, 1300)
	rows := eval[[]string](t, ctx, `[...document.querySelectorAll("#records tbody tr")].map((r) => r.textContent)`)
	if len(rows) != 3 || !strings.Contains(rows[0], "huddle") || !strings.Contains(rows[2], "boardroom") {
		t.Fatalf("call history rows (want huddle first, boardroom last): %q", rows)
	}
	if !strings.Contains(rows[0], "caller2@partner.example") || !strings.Contains(rows[0], "bye") || !strings.Contains(rows[0], "1 min") {
		t.Fatalf("call history row %q", rows[0])
	}
}

// TestDashboardRuleColourStable: a rule's colour is the same in every session, whatever other
// rules were seen first.
func TestDashboardRuleColourStable(t *testing.T) {
	b := newBrowser(t)
	colourOf := func(rules ...string) string {
		e := newEnv(t)
		for _, r := range rules {
			e.events.push(guard.Event{Time: time.Now().Add(-time.Hour), Source: "198.51.100.7:5060", Rule: r,
				Action: guard.Drop, Reason: "test"})
		}
		ctx := b.tab(e, 1200, 900)
		return eval[string](t, ctx, `document.querySelector('#chart rect[data-rule="scanner-user-agent"]').getAttribute("fill")`)
	}
	first := colourOf(guard.RuleGhostCall, guard.RuleFlood, guard.RuleScanner)
	second := colourOf(guard.RuleScanner)
	if first != second || first == "" {
		t.Fatalf("scanner-user-agent is %q in one session and %q in another", first, second)
	}
}

// TestDashboardNarrowScreen: at 500 px wide (and a 360 px phone) nothing makes the page scroll
// sideways: wide tables scroll inside their panel. A screenshot of each is saved.
func TestDashboardNarrowScreen(t *testing.T) {
	b := newBrowser(t)
	e := newEnv(t)
	e.propose(state.PutRoom(state.Room{Name: "boardroom-with-a-long-name", Inbound: state.InboundOpen}))
	e.propose(state.PutBinding(state.Binding{Room: "boardroom-with-a-long-name", Contact: "sip:b@192.0.2.10:5060",
		Source: "[2001:db8:1234:5678:9abc:def0:1234:5678]:50600", Transport: "TLS", Node: "edge1",
		UserAgent: "Poly G7500/4.0.1.2345 with a long product string", Expires: time.Now().Add(time.Hour)}))
	e.propose(state.PutBan(state.Ban{Prefix: mustPrefix("203.0.113.0/24"), Rule: guard.RuleFlood,
		Reason: "flood of INVITEs from a scanner farm", Strikes: 3, Created: time.Now(), Until: time.Now().Add(time.Hour)}))
	for _, width := range []int64{500, 360} {
		ctx := b.tab(e, width, 900)
		saveShot(t, ctx, fmt.Sprintf("dashboard-%d.png", width))
		over := eval[[]string](t, ctx, `(() => {
		const w = document.documentElement.clientWidth, out = [];
		if (document.documentElement.scrollWidth > w) out.push("page " + document.documentElement.scrollWidth + " > " + w);
		for (const el of document.querySelectorAll("header, .cards, .panel, table")) {
			const r = el.getBoundingClientRect();
			if (el.tagName !== "TABLE" && r.right > w + 0.5) out.push((el.id || el.className || el.tagName) + " right " + r.right);
			if (el.tagName === "TABLE") {
				const box = el.parentElement, s = getComputedStyle(box);
				if (el.scrollWidth > box.clientWidth && !["auto", "scroll"].includes(s.overflowX))
					out.push(el.id + " overflows a box that does not scroll");
			}
		}
		return out; })()`)
		if len(over) > 0 {
			t.Errorf("at %d px: %s", width, strings.Join(over, "; "))
		}
	}
}

// saveShot saves a screenshot in $PORTCULLIS_ARTIFACTS, else the test's temporary directory.
func saveShot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("PORTCULLIS_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}
