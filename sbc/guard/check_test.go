package guard

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

func TestCheckRules(t *testing.T) {
	const src = "198.51.100.7:5060"
	tests := []struct {
		name   string
		cfg    func(*Config)
		req    *Request
		want   Action
		code   int
		rule   string
		banned bool // a ban of the source was written to the store
	}{
		{name: "invite to a room", req: invite(src), want: Allow},
		{name: "options ping to the domain", req: with(invite(src), func(r *Request) { r.Method, r.RURIUser = "OPTIONS", "" }), want: Allow},
		{name: "registered flow skips every rule",
			req:  with(invite(src), func(r *Request) { r.Registered, r.UserAgent, r.RURIUser = true, "friendly-scanner", "999" }),
			want: Allow},
		{name: "allow-listed source skips every rule", cfg: func(c *Config) { c.Allow = []string{"198.51.100.0/24"}; c.Deny = []string{src[:12]} },
			req:  with(invite(src), func(r *Request) { r.UserAgent, r.RURIUser, r.MaxForwards = "sipvicious", "999", 0 }),
			want: Allow},
		{name: "deny-listed source", cfg: func(c *Config) { c.Deny = []string{"198.51.100.0/24"} },
			req: invite(src), want: Reject, code: 403, rule: RuleDenyList},
		{name: "deny-listed source, stealth", cfg: func(c *Config) { c.Deny = []string{"198.51.100.7"}; c.Stealth = true },
			req: invite(src), want: Drop, rule: RuleDenyList},
		{name: "deny-listed caller domain", cfg: func(c *Config) { c.Deny = []string{"*@PARTNER.net"} },
			req: invite(src), want: Reject, code: 403, rule: RuleDenyList},
		{name: "deny-listed caller glob", cfg: func(c *Config) { c.Deny = []string{"sip:al*@*.net"} },
			req: invite(src), want: Reject, code: 403, rule: RuleDenyList},
		{name: "caller allow entry beats caller deny", cfg: func(c *Config) { c.Deny = []string{"partner.net"}; c.Allow = []string{"alice@partner.net"} },
			req: invite(src), want: Allow},
		{name: "scanner user agent", req: with(invite(src), func(r *Request) { r.UserAgent = "friendly-scanner" }),
			want: Reject, code: 403, rule: RuleScanner, banned: true},
		{name: "scanner user agent any case, stealth", cfg: func(c *Config) { c.Stealth = true },
			req:  with(invite(src), func(r *Request) { r.UserAgent = "SIPVicious/0.3.4" }),
			want: Drop, rule: RuleScanner, banned: true},
		{name: "scanner From display name", req: with(invite(src), func(r *Request) { r.FromName = "sipvicious" }),
			want: Reject, code: 403, rule: RuleScanner, banned: true},
		{name: "custom scanner list replaces defaults", cfg: func(c *Config) { c.ScannerUserAgents = []string{"evil"} },
			req: with(invite(src), func(r *Request) { r.UserAgent = "friendly-scanner" }), want: Allow},
		{name: "empty scanner list disables", cfg: func(c *Config) { c.ScannerUserAgents = []string{} },
			req: with(invite(src), func(r *Request) { r.UserAgent = "friendly-scanner" }), want: Allow},
		{name: "max-forwards 0", req: with(invite(src), func(r *Request) { r.MaxForwards = 0 }),
			want: Reject, code: 483, rule: RuleMaxForwards},
		{name: "max-forwards 0 on OPTIONS is answered", req: with(invite(src), func(r *Request) { r.Method, r.MaxForwards = "OPTIONS", 0 }),
			want: Allow},
		{name: "max-forwards absent", req: with(invite(src), func(r *Request) { r.MaxForwards = -1 }), want: Allow},
		{name: "max-forwards out of range", req: with(invite(src), func(r *Request) { r.MaxForwards = 256 }),
			want: Reject, code: 400, rule: RuleMaxForwards},
		{name: "max-forwards 0 is answered even in stealth", cfg: func(c *Config) { c.Stealth = true },
			req: with(invite(src), func(r *Request) { r.MaxForwards = 0 }), want: Reject, code: 483, rule: RuleMaxForwards},
		{name: "From without host", req: with(invite(src), func(r *Request) { r.FromHost = "" }),
			want: Reject, code: 400, rule: RuleMalformed},
		{name: "To without host", req: with(invite(src), func(r *Request) { r.ToHost = "" }),
			want: Reject, code: 400, rule: RuleMalformed},
		{name: "control character in user", req: with(invite(src), func(r *Request) { r.FromUser = "al\x00ice" }),
			want: Reject, code: 400, rule: RuleMalformed},
		{name: "bad host", req: with(invite(src), func(r *Request) { r.FromHost = "partner.net\r\nX-Evil: 1" }),
			want: Reject, code: 400, rule: RuleMalformed},
		{name: "ghost call to our IP", req: with(invite(src), func(r *Request) { r.RURIUser, r.RURIHost = "100", "192.0.2.1" }),
			want: Reject, code: 403, rule: RuleGhostCall},
		{name: "ghost call to our IP without user, stealth", cfg: func(c *Config) { c.Stealth = true },
			req: with(invite(src), func(r *Request) { r.RURIUser, r.RURIHost = "", "192.0.2.1" }), want: Drop, rule: RuleGhostCall},
		{name: "ghost call to a room by IP", req: with(invite(src), func(r *Request) { r.RURIHost = "192.0.2.1" }),
			want: Reject, code: 403, rule: RuleGhostCall},
		{name: "IP dialling allowed for rooms", cfg: func(c *Config) { c.AllowIPDialing = true },
			req: with(invite(src), func(r *Request) { r.RURIHost = "192.0.2.1" }), want: Allow},
		{name: "IP dialling still refuses unknown users", cfg: func(c *Config) { c.AllowIPDialing = true },
			req: with(invite(src), func(r *Request) { r.RURIUser, r.RURIHost = "1001", "192.0.2.1" }), want: Reject, code: 403, rule: RuleGhostCall},
		{name: "numeric extension", req: with(invite(src), func(r *Request) { r.RURIUser = "1001" }),
			want: Reject, code: 403, rule: RuleGhostCall},
		{name: "E.164 number", req: with(invite(src), func(r *Request) { r.RURIUser = "+4930123456" }),
			want: Reject, code: 403, rule: RuleGhostCall},
		{name: "INVITE without user", req: with(invite(src), func(r *Request) { r.RURIUser = "" }),
			want: Reject, code: 403, rule: RuleGhostCall},
		{name: "unknown user", req: with(invite(src), func(r *Request) { r.RURIUser = "ceo" }),
			want: Reject, code: 404, rule: RuleUnknownUser},
		{name: "unknown user, stealth", cfg: func(c *Config) { c.Stealth = true }, req: with(invite(src), func(r *Request) { r.RURIUser = "ceo" }),
			want: Drop, rule: RuleUnknownUser},
		{name: "alias domain", cfg: func(c *Config) { c.Aliases = []string{"sip.example.com"} },
			req: with(invite(src), func(r *Request) { r.RURIHost = "SIP.Example.com." }), want: Allow},
		{name: "relay to another domain", req: with(invite(src), func(r *Request) { r.RURIHost = "victim.org" }),
			want: Reject, code: 403, rule: RuleRelay},
		{name: "relay to another IP", req: with(invite(src), func(r *Request) { r.RURIHost = "[2001:db8::9]" }),
			want: Reject, code: 403, rule: RuleRelay},
		{name: "room dialling out from an unknown flow is left to the B2BUA",
			req: with(invite(src), func(r *Request) {
				r.FromUser, r.FromHost, r.RURIUser, r.RURIHost = "boardroom", testDomain, "bob", "192.0.2.99"
			}),
			want: Allow},
		{name: "REGISTER of an unknown user is only counted", req: with(invite(src), func(r *Request) { r.Method, r.RURIUser, r.ToUser = "REGISTER", "", "nobody" }),
			want: Allow},
		{name: "OPTIONS to an unknown user is only counted", req: with(invite(src), func(r *Request) { r.Method, r.RURIUser = "OPTIONS", "1000" }),
			want: Allow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, st, clk := newTestGuard(t, tt.cfg)
			v := g.Check(tt.req)
			if v.Action != tt.want || v.Code != tt.code || v.Rule != tt.rule {
				t.Fatalf("Check = %+v, want action %s code %d rule %q", v, tt.want, tt.code, tt.rule)
			}
			if tt.want != Allow && v.Reason == "" {
				t.Errorf("refusal without a reason: %+v", v)
			}
			bans := st.State().Bans(clk.Now())
			if got := len(bans) == 1; got != tt.banned {
				t.Errorf("bans = %+v, want banned=%v", bans, tt.banned)
			}
			ev := g.Recent(EventFilter{}, 0)
			if (tt.want == Allow) != (len(ev) == 0) || len(ev) > 1 {
				t.Fatalf("events = %+v for %+v", ev, v)
			}
			if len(ev) == 1 && (ev[0].Rule != tt.rule || ev[0].Action != tt.want || ev[0].Code != tt.code || ev[0].Source != tt.req.Source.String()) {
				t.Errorf("event = %+v, verdict %+v", ev[0], v)
			}
			if tt.want != Allow && g.Counts()[tt.rule] != 1 {
				t.Errorf("count of %s = %d", tt.rule, g.Counts()[tt.rule])
			}
		})
	}
}

func TestThreatFeedRefuses(t *testing.T) {
	g, _, _ := newTestGuard(t, nil)
	g.setFeed(0, []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")})
	if v := g.Check(invite("203.0.113.9:5060")); v.Rule != RuleThreatFeed || v.Code != 403 {
		t.Fatalf("listed source: %+v", v)
	}
	if v := g.Check(invite("[::ffff:203.0.113.9]:5060")); v.Rule != RuleThreatFeed {
		t.Fatalf("v4-mapped listed source: %+v", v)
	}
	if v := g.Check(invite("198.51.100.1:5060")); !v.Allowed() {
		t.Fatalf("unlisted source: %+v", v)
	}
}

func TestRateLimit(t *testing.T) {
	g, st, clk := newTestGuard(t, func(c *Config) {
		c.RequestRate, c.RequestBurst, c.FloodRefusals, c.FloodWindow = 2, 4, 5, 10*time.Second
	})
	a := invite("198.51.100.7:5060")
	for i := range 4 {
		if v := g.Check(a); !v.Allowed() {
			t.Fatalf("request %d of the burst: %+v", i, v)
		}
	}
	if v := g.Check(a); v.Rule != RuleRateLimit || v.Code != 403 {
		t.Fatalf("past the burst: %+v", v)
	}
	// Another source, and another port of the same address.
	if v := g.Check(invite("198.51.100.8:5060")); !v.Allowed() {
		t.Fatalf("other source limited: %+v", v)
	}
	if v := g.Check(invite("198.51.100.7:5070")); v.Rule != RuleRateLimit {
		t.Fatalf("same address, other port: %+v", v)
	}
	clk.Add(500 * time.Millisecond) // one token back
	if v := g.Check(a); !v.Allowed() {
		t.Fatalf("after refill: %+v", v)
	}
	if v := g.Check(a); v.Rule != RuleRateLimit {
		t.Fatalf("refill is one token: %+v", v)
	}
	// Going on: the 5th refusal in the window bans (three refused so far).
	for range 1 {
		if v := g.Check(a); v.Rule != RuleRateLimit {
			t.Fatalf("want rate-limit: %+v", v)
		}
	}
	v := g.Check(a)
	if v.Rule != RuleFlood {
		t.Fatalf("want flood ban: %+v", v)
	}
	b, ok := st.State().Ban(netip.MustParsePrefix("198.51.100.7/32"))
	if !ok || b.Rule != RuleFlood || b.Strikes != 1 || b.Node != "node-1" || !b.Until.Equal(clk.Now().Add(time.Hour)) {
		t.Fatalf("ban = %+v %v", b, ok)
	}
	clk.Add(time.Minute)
	if v := g.Check(a); v.Rule != RuleBanned {
		t.Fatalf("banned source: %+v", v)
	}
}

func TestRateLimitIPv6PerSlash64(t *testing.T) {
	g, _, _ := newTestGuard(t, func(c *Config) { c.RequestRate, c.RequestBurst = 1, 2 })
	for i, src := range []string{"[2001:db8:1:2::1]:5060", "[2001:db8:1:2:ffff::9]:5060"} {
		if v := g.Check(invite(src)); !v.Allowed() {
			t.Fatalf("request %d: %+v", i, v)
		}
	}
	if v := g.Check(invite("[2001:db8:1:2::77]:5060")); v.Rule != RuleRateLimit {
		t.Fatalf("same /64 shares the bucket: %+v", v)
	}
	if v := g.Check(invite("[2001:db8:1:3::1]:5060")); !v.Allowed() {
		t.Fatalf("other /64: %+v", v)
	}
}

func TestCheckFollowsClusterLists(t *testing.T) {
	g, st, _ := newTestGuard(t, func(c *Config) { c.Deny = []string{"203.0.113.0/24"} })
	ctx := context.Background()
	a := invite("198.51.100.7:5060")
	if v := g.Check(a); !v.Allowed() {
		t.Fatal(v)
	}
	if err := st.Propose(ctx, state.SetLists(state.Lists{Deny: []string{"198.51.100.0/24"}, ScannerUserAgents: []string{"PolyEvil"}})); err != nil {
		t.Fatal(err)
	}
	if v := g.Check(a); v.Rule != RuleDenyList {
		t.Fatalf("cluster deny entry: %+v", v)
	}
	if v := g.Check(invite("203.0.113.1:5060")); v.Rule != RuleDenyList {
		t.Fatalf("config deny entry still applies: %+v", v)
	}
	if v := g.Check(with(invite("198.51.100.99:1"), func(r *Request) { r.UserAgent = "polyevil 1.0" })); v.Rule != RuleDenyList {
		t.Fatalf("deny first: %+v", v)
	}
	if v := g.Check(with(invite("192.0.2.50:1"), func(r *Request) { r.UserAgent = "polyevil 1.0" })); v.Rule != RuleScanner {
		t.Fatalf("cluster scanner entry: %+v", v)
	}
	if v := g.Check(with(invite("192.0.2.51:1"), func(r *Request) { r.UserAgent = "friendly-scanner" })); v.Rule != RuleScanner {
		t.Fatalf("default scanner entries remain: %+v", v)
	}
	// Bad cluster entries are skipped, good ones kept.
	if err := st.Propose(ctx, state.SetLists(state.Lists{Allow: []string{"198.51.100.7", "bad host!"}})); err != nil {
		t.Fatal(err)
	}
	if v := g.Check(a); !v.Allowed() {
		t.Fatalf("cluster allow entry: %+v", v)
	}
}

func TestCheckAllowPathDoesNotAllocate(t *testing.T) {
	g, _, _ := newTestGuard(t, func(c *Config) {
		c.RequestRate, c.RequestBurst = 1e12, 1<<30
		c.Deny = []string{"203.0.113.0/24", "*@spam.example", "evil.example", "*.evil.example", "bad@partner.net"}
		c.Allow = []string{"10.0.0.0/8", "alice@trusted.example"}
	})
	for _, r := range []*Request{
		invite("198.51.100.7:5060"),
		with(invite("198.51.100.7:5060"), func(r *Request) { r.Method, r.RURIUser = "OPTIONS", "" }),
		with(invite("[2001:db8::7]:5060"), func(r *Request) { r.FromHost = "[2001:DB8::1]" }),
		with(invite("198.51.100.7:5060"), func(r *Request) { r.Registered = true }),
	} {
		g.Check(r) // first sight of the source creates its state
		if n := testing.AllocsPerRun(200, func() { g.Check(r) }); n != 0 {
			t.Errorf("%s from %s: %v allocs per Check", r.Method, r.Source, n)
		}
	}
}

func TestCheckWithoutSource(t *testing.T) {
	g, _, _ := newTestGuard(t, nil)
	r := invite("198.51.100.7:5060")
	r.Source = netip.AddrPort{}
	if v := g.Check(r); v.Rule != RuleMalformed || v.Code != 400 {
		t.Fatalf("%+v", v)
	}
	g.AuthFailed(netip.AddrPort{}, "x", "UDP") // must not panic
}

func TestClose(t *testing.T) {
	g, st, _ := newTestGuard(t, nil)
	g.Close()
	if err := st.Propose(context.Background(), state.SetLists(state.Lists{Deny: []string{"198.51.100.0/24"}})); err != nil {
		t.Fatal(err)
	}
	if v := g.Check(invite("198.51.100.7:5060")); !v.Allowed() {
		t.Fatalf("a closed guard followed the state: %+v", v)
	}
}

// TestConcurrentUse runs every entry point at once (for the race detector).
func TestConcurrentUse(t *testing.T) {
	g, st, _ := newTestGuard(t, func(c *Config) {
		c.Now = nil
		c.RequestRate, c.RequestBurst, c.UnknownUsers, c.AuthFailures, c.Events = 50, 20, 3, 3, 100
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- g.Run(ctx) }()
	events := g.Subscribe(ctx)
	go func() {
		for range events {
		}
	}()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				a := netip.AddrFrom4([4]byte{198, 51, byte(w), byte(i % 50)})
				r := invite(netip.AddrPortFrom(a, 5060).String())
				switch i % 7 {
				case 1:
					r.RURIUser = fmt.Sprint(i)
				case 2:
					r.UserAgent = "sipcli"
				case 3:
					g.AuthFailed(r.Source, "nobody", "UDP")
				case 4:
					g.AuthSucceeded(r.Source, "boardroom")
				case 5:
					g.CheckCall(r, state.Room{Name: "boardroom", Inbound: state.InboundAllowlist, Allow: []string{"*@partner.net"}}, i%2 == 0)
				}
				g.Check(r)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 50 {
			_ = st.Propose(ctx, state.SetLists(state.Lists{Deny: []string{fmt.Sprintf("203.0.113.%d", i)}}))
			_ = st.Propose(ctx, state.PutRoom(state.Room{Name: fmt.Sprint("room", i)}))
			_ = st.Propose(ctx, state.LiftBan(netip.MustParsePrefix(fmt.Sprintf("198.51.0.%d/32", i))))
			g.setFeed(i%3, []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("192.0.2.%d/32", i))})
			g.Recent(EventFilter{Rule: RuleScanner}, 10)
			g.Counts()
			g.Stats()
			g.FeedPrefixes()
			g.prune(time.Now())
		}
	}()
	wg.Wait()
	cancel()
	if err := <-runDone; err != nil {
		t.Fatal(err)
	}
}

func TestNotSIP(t *testing.T) {
	g, st, _ := newTestGuard(t, func(c *Config) {
		c.RequestRate, c.RequestBurst, c.FloodRefusals, c.FloodWindow = 2, 4, 3, 10*time.Second
		c.Allow = []string{"203.0.113.0/24"}
	})
	probe := []byte("GET / HTTP/1.1\r\n")
	garbage := func(src string) *Request {
		return &Request{Source: netip.MustParseAddrPort(src), Transport: "UDP"}
	}
	// A registered flow or an allow-listed source: dropped, nothing recorded, nothing counted.
	for _, r := range []*Request{with(garbage("198.51.100.9:5060"), func(r *Request) { r.Registered = true }), garbage("203.0.113.5:5060")} {
		for range 10 {
			if v := g.NotSIP(r, probe); v.Action != Drop || v.Rule != "" {
				t.Fatalf("%v: %+v", r.Source, v)
			}
		}
	}
	if evs := g.Recent(EventFilter{}, 10); len(evs) != 0 {
		t.Fatalf("events for trusted sources: %+v", evs)
	}
	// Anyone else: a malformed event with the first bytes, and the source's rate is spent.
	a := garbage("198.51.100.7:40000")
	v := g.NotSIP(a, probe)
	if v.Action != Drop || v.Rule != RuleMalformed {
		t.Fatalf("first probe: %+v", v)
	}
	evs := g.Recent(EventFilter{}, 10)
	if len(evs) != 1 || evs[0].Rule != RuleMalformed || evs[0].Action != Drop || !strings.Contains(evs[0].Reason, `"GET / HTTP/1.1\r\n"`) {
		t.Fatalf("events: %+v", evs)
	}
	for range 3 {
		g.NotSIP(a, probe)
	}
	var last Verdict
	for range 3 {
		last = g.NotSIP(a, probe)
	}
	if last.Rule != RuleFlood || last.Action != Drop {
		t.Fatalf("a flood of probes: %+v, want a flood ban (dropped)", last)
	}
	if _, ok := st.State().Ban(netip.MustParsePrefix("198.51.100.7/32")); !ok {
		t.Fatal("no ban for a flood of probes")
	}
	// Real SIP from it is refused now too.
	if v := g.Check(invite("198.51.100.7:5060")); v.Rule != RuleBanned {
		t.Fatalf("banned source's INVITE: %+v", v)
	}
}
