package guard

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

func scanner(src string) *Request {
	return with(invite(src), func(r *Request) { r.UserAgent = "friendly-scanner" })
}

func TestBanGrowthAndExpiry(t *testing.T) {
	g, st, clk := newTestGuard(t, func(c *Config) { c.BanTime, c.BanMax = time.Hour, 5*time.Hour })
	p := netip.MustParsePrefix("198.51.100.7/32")
	clean := invite("198.51.100.7:5060")
	want := []time.Duration{time.Hour, 2 * time.Hour, 4 * time.Hour, 5 * time.Hour, 5 * time.Hour}
	for i, d := range want {
		start := clk.Now()
		if v := g.Check(scanner("198.51.100.7:5060")); v.Rule != RuleScanner {
			t.Fatalf("strike %d: %+v", i+1, v)
		}
		b, ok := st.State().Ban(p)
		if !ok || b.Strikes != i+1 || !b.Until.Equal(start.Add(d)) || !b.Created.Equal(start) || b.Rule != RuleScanner {
			t.Fatalf("strike %d: ban %+v, want %s", i+1, b, d)
		}
		// While banned, even clean requests are refused.
		clk.Add(d - time.Second)
		if v := g.Check(clean); v.Rule != RuleBanned {
			t.Fatalf("strike %d, just before the end: %+v", i+1, v)
		}
		clk.Add(time.Second)
		if v := g.Check(clean); !v.Allowed() {
			t.Fatalf("strike %d, at the end: %+v", i+1, v)
		}
		if i == 1 {
			// The cluster forgets expired bans; this node still remembers the strikes.
			if err := st.Propose(context.Background(), state.Expire(clk.Now(), 0, 0)); err != nil {
				t.Fatal(err)
			}
			if _, ok := st.State().Ban(p); ok {
				t.Fatal("expired ban not dropped by Expire")
			}
		}
	}
}

func TestBanStrikesFromCluster(t *testing.T) {
	g, st, clk := newTestGuard(t, nil)
	p := netip.MustParsePrefix("2001:db8:7:7::/64")
	// Another node banned this /64 three times; the ban has expired.
	old := state.Ban{Prefix: p, Rule: RuleFlood, Strikes: 3, Created: clk.Now().Add(-9 * time.Hour), Until: clk.Now().Add(-time.Hour)}
	if err := st.Propose(context.Background(), state.PutBan(old)); err != nil {
		t.Fatal(err)
	}
	if v := g.Check(scanner("[2001:db8:7:7::99]:5060")); v.Rule != RuleScanner {
		t.Fatal(v)
	}
	b, _ := st.State().Ban(p)
	if b.Strikes != 4 || b.Until.Sub(clk.Now()) != 8*time.Hour {
		t.Fatalf("ban = %+v", b)
	}
}

func TestBanInForceIsNotExtended(t *testing.T) {
	g, st, clk := newTestGuard(t, nil)
	p := netip.MustParsePrefix("198.51.100.7/32")
	other := state.Ban{Prefix: p, Rule: RuleBruteForce, Strikes: 2, Created: clk.Now(), Until: clk.Now().Add(30 * time.Minute), Node: "node-2"}
	if err := st.Propose(context.Background(), state.PutBan(other)); err != nil {
		t.Fatal(err)
	}
	// The cluster's ban set refuses the source before any rule runs.
	if v := g.Check(scanner("198.51.100.7:5060")); v.Rule != RuleBanned {
		t.Fatalf("cluster ban: %+v", v)
	}
	// A ban decided while one is in force (this node had not seen it yet) keeps the old one.
	until, strikes, ok, _ := g.ban(p.Addr(), ridScanner, "test", clk.Now())
	if !ok || strikes != 0 || !until.Equal(other.Until) {
		t.Fatalf("ban() = %v %d %v", until, strikes, ok)
	}
	if b, _ := st.State().Ban(p); b != other {
		t.Fatalf("ban changed: %+v", b)
	}
}

func TestBanLiftedByAdmin(t *testing.T) {
	g, st, clk := newTestGuard(t, nil)
	if v := g.Check(scanner("198.51.100.7:5060")); v.Rule != RuleScanner {
		t.Fatal(v)
	}
	if v := g.Check(invite("198.51.100.7:5060")); v.Rule != RuleBanned {
		t.Fatal(v)
	}
	if err := st.Propose(context.Background(), state.LiftBan(netip.MustParsePrefix("198.51.100.7/32"))); err != nil {
		t.Fatal(err)
	}
	if v := g.Check(invite("198.51.100.7:5060")); !v.Allowed() {
		t.Fatalf("after lift: %+v", v)
	}
	// Lifting resets the strikes: the next ban is a first one.
	clk.Add(time.Minute)
	g.Check(scanner("198.51.100.7:5060"))
	if b, _ := st.State().Ban(netip.MustParsePrefix("198.51.100.7/32")); b.Strikes != 1 {
		t.Fatalf("ban after lift = %+v", b)
	}
}

func TestBanFromOtherNodeIsEnforced(t *testing.T) {
	g, st, clk := newTestGuard(t, nil)
	ban := state.Ban{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Rule: "manual", Created: clk.Now(), Until: clk.Now().Add(time.Hour)}
	if err := st.Propose(context.Background(), state.PutBan(ban)); err != nil {
		t.Fatal(err)
	}
	g.refreshBans(clk.Now().UnixNano()) // as Run's ticker would, in case the throttle held it back
	if v := g.Check(invite("203.0.113.77:5060")); v.Rule != RuleBanned {
		t.Fatalf("%+v", v)
	}
	clk.Add(time.Hour)
	if v := g.Check(invite("203.0.113.77:5060")); !v.Allowed() {
		t.Fatalf("after expiry: %+v", v)
	}
}

func TestProtectedSourcesAreNotBanned(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*Config)
		prep func(*testing.T, *state.Local, *testClock)
		src  string
	}{
		{name: "registered room flow on the same address",
			prep: func(t *testing.T, st *state.Local, clk *testClock) {
				b := state.Binding{Room: "boardroom", Contact: "sip:boardroom@198.51.100.7:5062", Source: "198.51.100.7:5062",
					Transport: "UDP", Node: "node-1", Expires: clk.Now().Add(time.Hour)}
				if err := st.Propose(context.Background(), state.PutBinding(b)); err != nil {
					t.Fatal(err)
				}
			},
			src: "198.51.100.7:5060"},
		{name: "allow-listed host inside the /64", cfg: func(c *Config) { c.Allow = []string{"2001:db8:1:1::5"} },
			src: "[2001:db8:1:1::6]:5060"},
		{name: "our node address", cfg: func(c *Config) { c.NodeAddrs = append(c.NodeAddrs, netip.MustParseAddr("198.51.100.7")) },
			src: "198.51.100.7:5060"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, st, clk := newTestGuard(t, tt.cfg)
			if tt.prep != nil {
				tt.prep(t, st, clk)
			}
			v := g.Check(scanner(tt.src))
			if v.Rule != RuleScanner {
				t.Fatalf("%+v", v)
			}
			if bans := st.State().Bans(clk.Now()); len(bans) != 0 {
				t.Fatalf("banned: %+v", bans)
			}
			if v := g.Check(invite(tt.src)); !v.Allowed() {
				t.Fatalf("clean request after: %+v", v)
			}
		})
	}
}

func TestEnumeration(t *testing.T) {
	g, st, clk := newTestGuard(t, func(c *Config) { c.UnknownUsers, c.UnknownWindow = 5, time.Minute })
	try := func(user string) Verdict {
		return g.Check(with(invite("198.51.100.7:5060"), func(r *Request) { r.RURIUser = user }))
	}
	for _, u := range []string{"100", "101", "101", "101", "admin", "boardroom"} {
		if v := try(u); v.Rule == RuleEnumeration {
			t.Fatalf("%s: banned early: %+v", u, v)
		}
	}
	clk.Add(30 * time.Second)
	if v := try("102"); v.Rule != RuleGhostCall {
		t.Fatalf("102: %+v", v)
	}
	// Four distinct so far; the window slides: 100, 101 and admin age out, 102 stays.
	clk.Add(31 * time.Second)
	for _, u := range []string{"103", "104", "105"} {
		if v := try(u); v.Rule != RuleGhostCall {
			t.Fatalf("%s: %+v", u, v)
		}
	}
	v := try("106")
	if v.Rule != RuleEnumeration || v.Code != 403 {
		t.Fatalf("fifth distinct unknown user: %+v", v)
	}
	if b, ok := st.State().Ban(netip.MustParsePrefix("198.51.100.7/32")); !ok || b.Rule != RuleEnumeration {
		t.Fatalf("ban = %+v", b)
	}
	if v := try("boardroom"); v.Rule != RuleBanned {
		t.Fatalf("after: %+v", v)
	}
}

func TestEnumerationByRegisterAndOptions(t *testing.T) {
	g, st, _ := newTestGuard(t, func(c *Config) { c.UnknownUsers = 4 })
	reg := func(user string) Verdict {
		return g.Check(with(invite("198.51.100.7:5060"), func(r *Request) { r.Method, r.RURIUser, r.ToUser = "REGISTER", "", user }))
	}
	opt := func(user string) Verdict {
		return g.Check(with(invite("198.51.100.7:5060"), func(r *Request) { r.Method, r.RURIUser = "OPTIONS", user }))
	}
	for i, v := range []Verdict{reg("100"), reg("boardroom"), opt("101"), opt("huddle"), reg("102")} {
		if !v.Allowed() {
			t.Fatalf("%d: %+v", i, v)
		}
	}
	if v := opt("103"); v.Rule != RuleEnumeration {
		t.Fatalf("%+v", v)
	}
	if _, ok := st.State().Ban(netip.MustParsePrefix("198.51.100.7/32")); !ok {
		t.Fatal("no ban")
	}
}

func TestBruteForce(t *testing.T) {
	g, st, clk := newTestGuard(t, func(c *Config) { c.AuthFailures, c.AuthWindow = 3, time.Minute })
	src := netip.MustParseAddrPort("198.51.100.7:5060")
	p := netip.MustParsePrefix("198.51.100.7/32")
	g.AuthFailed(src, "boardroom", "UDP")
	g.AuthFailed(src, "boardroom", "UDP")
	g.AuthSucceeded(src, "boardroom") // a typo, then the right password
	g.AuthFailed(src, "boardroom", "UDP")
	clk.Add(61 * time.Second) // the first failure after the success ages out
	g.AuthFailed(src, "boardroom", "UDP")
	g.AuthFailed(src, "boardroom", "TCP")
	if _, ok := st.State().Ban(p); ok {
		t.Fatal("banned too early")
	}
	g.AuthFailed(src, "boardroom", "TCP")
	b, ok := st.State().Ban(p)
	if !ok || b.Rule != RuleBruteForce || b.Strikes != 1 {
		t.Fatalf("ban = %+v %v", b, ok)
	}
	ev := g.Recent(EventFilter{Rule: RuleBruteForce}, 0)
	if len(ev) != 1 || ev[0].Transport != "TCP" || ev[0].Source != src.String() {
		t.Fatalf("events = %+v", ev)
	}
	if v := g.Check(invite(src.String())); v.Rule != RuleBanned {
		t.Fatalf("%+v", v)
	}
}

func TestBruteForceSparesAllowListed(t *testing.T) {
	g, st, _ := newTestGuard(t, func(c *Config) { c.AuthFailures, c.Allow = 2, []string{"198.51.100.0/24"} })
	for range 10 {
		g.AuthFailed(netip.MustParseAddrPort("198.51.100.7:5060"), "nobody", "UDP")
	}
	if n := len(st.State().Bans(time.Time{})); n != 0 {
		t.Fatalf("%d bans", n)
	}
}

func TestAuthFailuresOfUnknownUsersAreEnumeration(t *testing.T) {
	g, st, _ := newTestGuard(t, func(c *Config) { c.UnknownUsers, c.AuthFailures = 3, 100 })
	for i := range 3 {
		g.AuthFailed(netip.MustParseAddrPort("198.51.100.7:5060"), fmt.Sprint(100+i), "UDP")
	}
	b, ok := st.State().Ban(netip.MustParsePrefix("198.51.100.7/32"))
	if !ok || b.Rule != RuleEnumeration {
		t.Fatalf("ban = %+v %v", b, ok)
	}
}

func TestPrune(t *testing.T) {
	g, _, clk := newTestGuard(t, func(c *Config) { c.IdleTimeout = 10 * time.Minute })
	g.Check(invite("198.51.100.7:5060"))
	g.Check(scanner("198.51.100.8:5060")) // banned for 1h: kept while banned
	if n := g.Stats().Sources; n != 2 {
		t.Fatalf("sources = %d", n)
	}
	clk.Add(11 * time.Minute)
	g.prune(clk.Now())
	if n := g.Stats().Sources; n != 1 {
		t.Fatalf("after 11m: sources = %d", n)
	}
	clk.Add(time.Hour)
	g.prune(clk.Now())
	if s := g.Stats(); s.Sources != 0 || s.Bans != 1 {
		t.Fatalf("after the ban: %+v", s)
	}
	clk.Add(8 * 24 * time.Hour)
	g.prune(clk.Now())
	if s := g.Stats(); s.Bans != 0 {
		t.Fatalf("strikes kept: %+v", s)
	}
}

func TestSourceTableBounded(t *testing.T) {
	g, _, _ := newTestGuard(t, func(c *Config) { c.MaxSources, c.RequestRate, c.RequestBurst = 64, 1, 1000 })
	for i := range 5000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		g.Check(invite(netip.AddrPortFrom(a, 5060).String()))
	}
	if n := g.Stats().Sources; n > 64 {
		t.Fatalf("sources = %d", n)
	}
}
