package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

func TestLists(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", "/api/v1/guard/lists", e.read, nil)
	wantStatus(t, r, http.StatusOK)
	if string(r.body) != `{"allow":[],"deny":[],"scanner_user_agents":[]}`+"\n" {
		t.Fatalf("empty lists: %s", r.body)
	}
	in := state.Lists{Allow: []string{"198.51.100.0/24", "*@partner.example.com"}, Deny: []string{"203.0.113.0/24"},
		ScannerUserAgents: []string{"friendly-scanner"}}
	r = e.do("PUT", "/api/v1/guard/lists", e.admin, in)
	wantStatus(t, r, http.StatusOK)
	var got state.Lists
	r.json(t, &got)
	if len(got.Allow) != 2 || got.Deny[0] != "203.0.113.0/24" || got.ScannerUserAgents[0] != "friendly-scanner" {
		t.Fatalf("lists %+v", got)
	}
	if l := e.store.State().Lists(); len(l.Deny) != 1 {
		t.Fatalf("state lists %+v", l)
	}
	for _, tc := range []struct{ body, field string }{
		{`{"allow":[""]}`, "allow[0]"},
		{`{"deny":["ok","with space"]}`, "deny[1]"},
		{`{"scanner_user_agents":["  "]}`, "scanner_user_agents[0]"},
		{`{"deny":"203.0.113.1"}`, "deny"},
		{`{"block":[]}`, "block"},
	} {
		wantErr(t, e.do("PUT", "/api/v1/guard/lists", e.admin, tc.body), http.StatusBadRequest, CodeInvalid, tc.field)
	}
	if a := e.store.State().AuditLog(0, 0); len(a) != 1 || a[0].Action != "lists.set" {
		t.Fatalf("audit %+v", a)
	}
	var rules list[string]
	e.do("GET", "/api/v1/guard/rules", e.read, nil).json(t, &rules)
	if len(rules.Items) != len(guard.Rules()) {
		t.Fatalf("rules %v", rules.Items)
	}
}

func TestBans(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/api/v1/guard/bans", e.admin, BanInput{Prefix: "203.0.113.7", Duration: "2h", Reason: "scanning"})
	wantStatus(t, r, http.StatusCreated)
	var b state.Ban
	r.json(t, &b)
	if b.Prefix != netip.MustParsePrefix("203.0.113.7/32") || b.Rule != "admin" || b.Reason != "scanning" ||
		!b.Until.Equal(b.Created.Add(2*time.Hour)) || b.Node != "edge1" || b.Strikes != 1 {
		t.Fatalf("ban %+v", b)
	}
	wantStatus(t, e.do("POST", "/api/v1/guard/bans", e.admin, BanInput{Prefix: "2001:db8:bad::/48"}), http.StatusCreated)
	r = e.do("POST", "/api/v1/guard/bans", e.admin, BanInput{Prefix: "203.0.113.7/32"})
	wantStatus(t, r, http.StatusCreated)
	r.json(t, &b)
	if b.Strikes != 2 || !b.Until.Equal(b.Created.Add(time.Hour)) || !strings.Contains(b.Reason, "test-admin") {
		t.Fatalf("re-ban %+v", b)
	}

	var l list[state.Ban]
	e.do("GET", "/api/v1/guard/bans", e.read, nil).json(t, &l)
	if len(l.Items) != 2 {
		t.Fatalf("bans %+v", l)
	}
	wantStatus(t, e.do("GET", "/api/v1/guard/bans/2001:db8:bad::/48", e.read, nil), http.StatusOK)
	wantStatus(t, e.do("GET", "/api/v1/guard/bans/203.0.113.7", e.read, nil), http.StatusOK)
	wantErr(t, e.do("GET", "/api/v1/guard/bans/203.0.113.8", e.read, nil), http.StatusNotFound, CodeNotFound, "")
	wantErr(t, e.do("GET", "/api/v1/guard/bans/not-an-ip", e.read, nil), http.StatusBadRequest, CodeInvalid, "prefix")

	// A ban covering a registered room's flow would lock the room out.
	e.propose(state.PutBinding(state.Binding{Room: "boardroom", Contact: "sip:br@198.51.100.20", Source: "198.51.100.20:5060",
		Node: "edge1", Expires: e.now.Add(time.Hour)}))
	wantErr(t, e.do("POST", "/api/v1/guard/bans", e.admin, BanInput{Prefix: "198.51.100.0/24"}), http.StatusConflict, CodeConflict, "")
	wantStatus(t, e.do("POST", "/api/v1/guard/bans", e.admin, BanInput{Prefix: "198.51.100.0/24", Force: true}), http.StatusCreated)

	for _, tc := range []struct {
		in    any
		field string
	}{
		{`{}`, "prefix"},
		{BanInput{Prefix: "banana"}, "prefix"},
		{BanInput{Prefix: "10.0.0.0/7"}, "prefix"},
		{BanInput{Prefix: "2001::/12"}, "prefix"},
		{BanInput{Prefix: "192.0.2.1", Duration: "forever"}, "duration"},
		{BanInput{Prefix: "192.0.2.1", Duration: "-1h"}, "duration"},
		{BanInput{Prefix: "192.0.2.1", Duration: "100000h"}, "duration"},
		{BanInput{Prefix: "192.0.2.1", Reason: strings.Repeat("x", 201)}, "reason"},
		{BanInput{Prefix: "192.0.2.1", Reason: "bad\nreason"}, "reason"},
		{`{"prefix":"192.0.2.1","until":"tomorrow"}`, "until"},
	} {
		wantErr(t, e.do("POST", "/api/v1/guard/bans", e.admin, tc.in), http.StatusBadRequest, CodeInvalid, tc.field)
	}

	wantStatus(t, e.do("DELETE", "/api/v1/guard/bans/203.0.113.7/32", e.admin, nil), http.StatusNoContent)
	wantErr(t, e.do("DELETE", "/api/v1/guard/bans/203.0.113.7", e.admin, nil), http.StatusNotFound, CodeNotFound, "")
	wantStatus(t, e.do("DELETE", "/api/v1/guard/bans/2001:db8:bad::/48", e.admin, nil), http.StatusNoContent)
	if _, ok := e.store.State().Ban(netip.MustParsePrefix("203.0.113.7/32")); ok {
		t.Fatal("ban not lifted in the state")
	}
	// Expired bans are gone from the API even before the expiry sweep.
	e.now = e.now.Add(2 * time.Hour)
	e.do("GET", "/api/v1/guard/bans", e.read, nil).json(t, &l)
	if len(l.Items) != 0 {
		t.Fatalf("expired bans listed: %+v", l)
	}
	wantErr(t, e.do("DELETE", "/api/v1/guard/bans/198.51.100.0/24", e.admin, nil), http.StatusNotFound, CodeNotFound, "")
}

func TestEvents(t *testing.T) {
	e := newEnv(t)
	t0 := e.now.Truncate(time.Hour).Add(-3 * time.Hour)
	for i, ev := range []guard.Event{
		{Source: "203.0.113.5:5060", Rule: guard.RuleScanner, Reason: "sipvicious"},
		{Source: "203.0.113.5:5062", Rule: guard.RuleScanner, Reason: "sipvicious"},
		{Source: "198.51.100.9:5060", Rule: guard.RuleRoomAllowlist, Room: "boardroom", Reason: "not on the list"},
		{Source: "[2001:db8::1]:5060", Rule: guard.RuleGhostCall, Reason: "to our IP"},
	} {
		ev.Time = t0.Add(time.Duration(i) * time.Hour)
		e.events.push(ev)
	}
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"", 4},
		{"rule=scanner-user-agent", 2},
		{"room=boardroom", 1},
		{"source=203.0.113.0/24", 2},
		{"source=2001:db8::1", 1},
		{"since=" + strings.ReplaceAll(t0.Add(time.Hour).Format(time.RFC3339), "+", "%2B"), 3},
		{"limit=1", 1},
	} {
		var l list[apiEvent]
		r := e.do("GET", "/api/v1/events?"+tc.query, e.read, nil)
		wantStatus(t, r, http.StatusOK)
		r.json(t, &l)
		if len(l.Items) != tc.want {
			t.Fatalf("%q: %d events, want %d", tc.query, len(l.Items), tc.want)
		}
	}
	for _, tc := range []struct{ query, field string }{
		{"source=nowhere", "source"}, {"limit=0", "limit"}, {"since=later", "since"}, {"user=x", "user"},
	} {
		wantErr(t, e.do("GET", "/api/v1/events?"+tc.query, e.read, nil), http.StatusBadRequest, CodeInvalid, tc.field)
	}

	var sum EventSummary
	e.do("GET", "/api/v1/events/summary?hours=3", e.read, nil).json(t, &sum)
	// The 3-hour window starts at the hour of t0+1h: three events in it.
	if sum.Hours != 3 || len(sum.Hourly) != 3 || sum.Total != 3 || sum.Hourly[0].Counts[guard.RuleScanner] != 1 ||
		sum.Hourly[1].Counts[guard.RuleRoomAllowlist] != 1 || sum.Hourly[2].Counts[guard.RuleGhostCall] != 1 {
		t.Fatalf("summary %+v", sum)
	}
	e.do("GET", "/api/v1/events/summary", e.read, nil).json(t, &sum)
	if sum.Total != 4 || sum.Rules[0] != guard.RuleScanner || sum.TopSources[0].Source != "203.0.113.5" ||
		sum.TopSources[0].Count != 2 || sum.Counts[guard.RuleScanner] != 2 || len(sum.Hourly) != 24 {
		t.Fatalf("summary %+v", sum)
	}
	wantErr(t, e.do("GET", "/api/v1/events/summary?hours=169", e.read, nil), http.StatusBadRequest, CodeInvalid, "hours")
	wantErr(t, e.do("GET", "/api/v1/events/summary?top=0", e.read, nil), http.StatusBadRequest, CodeInvalid, "top")
}

func TestEventsWithoutGuard(t *testing.T) {
	e := newEnv(t, withoutEvents())
	var l list[apiEvent]
	e.do("GET", "/api/v1/events", e.read, nil).json(t, &l)
	if l.Items == nil || len(l.Items) != 0 {
		t.Fatalf("events %+v", l)
	}
	wantErr(t, e.do("GET", "/api/v1/events/stream", e.read, nil), http.StatusServiceUnavailable, CodeUnavailable, "")
	wantStatus(t, e.do("GET", "/api/v1/events/summary", e.read, nil), http.StatusOK)
}

func TestEventStream(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.http.URL+"/api/v1/events/stream?rule=flood", nil)
	req.Header.Set("Authorization", "Bearer "+e.read)
	res, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for e.events.subscribers() == 0 {
		time.Sleep(time.Millisecond)
	}
	e.events.push(guard.Event{Time: e.now, Source: "192.0.2.1:5060", Rule: guard.RuleScanner}) // filtered out
	e.events.push(guard.Event{Time: e.now, Source: "192.0.2.2:5060", Rule: guard.RuleFlood, Reason: "too fast"})
	sc := bufio.NewScanner(res.Body)
	var event, data string
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "event: "); ok {
			event = v
		}
		if v, ok := strings.CutPrefix(line, "data: "); ok {
			data = v
			break
		}
	}
	var ev apiEvent
	if err := json.Unmarshal([]byte(data), &ev); err != nil || event != "refusal" || ev.Rule != guard.RuleFlood ||
		ev.Source != "192.0.2.2:5060" {
		t.Fatalf("event %q data %q: %v", event, data, err)
	}
	// Closing the server ends the stream (and unsubscribes).
	e.srv.Close()
	for sc.Scan() {
	}
	for e.events.subscribers() != 0 {
		time.Sleep(time.Millisecond)
	}
}

// apiEvent is guard.Event as a client decodes it (guard.Action marshals to text only).
type apiEvent struct {
	Time   time.Time `json:"time"`
	Source string    `json:"source"`
	Room   string    `json:"room"`
	Rule   string    `json:"rule"`
	Action string    `json:"action"`
	Reason string    `json:"reason"`
}

// TestSites lists the guard's sites: the address rooms registered from, with its rooms now and
// the most seen; an Events without sites lists none.
func TestSites(t *testing.T) {
	e := newEnv(t, func(_ *Config, d *Deps) {
		g, err := guard.New(guard.Config{Domain: testDomain}, d.Store)
		if err != nil {
			t.Fatal(err)
		}
		d.Events = g
	})
	for i, src := range []string{"198.51.100.7:5060", "198.51.100.7:5062"} {
		b := state.Binding{Room: "r" + itoa(i), Contact: "sip:r@x" + itoa(i), Source: src, Node: "edge1", Expires: time.Now().Add(time.Hour)}
		if err := e.store.Propose(context.Background(), state.PutBinding(b)); err != nil {
			t.Fatal(err)
		}
	}
	var sites list[guard.Site]
	e.do("GET", "/api/v1/guard/sites", e.read, nil).json(t, &sites)
	if len(sites.Items) != 1 || sites.Items[0].Prefix.String() != "198.51.100.7/32" || sites.Items[0].Rooms != 2 ||
		sites.Items[0].MostRooms != 2 || !sites.Items[0].DemotedUntil.IsZero() {
		t.Fatalf("sites %+v", sites.Items)
	}
	wantStatus(t, e.do("GET", "/api/v1/guard/sites", "", nil), http.StatusUnauthorized)

	plain := newEnv(t)
	plain.do("GET", "/api/v1/guard/sites", plain.read, nil).json(t, &sites)
	if len(sites.Items) != 0 {
		t.Fatalf("sites from an event log without them: %+v", sites.Items)
	}
}
