package guard

import (
	"net/netip"
	"testing"
	"time"
)

// TestMediaRefusalsBan: every media refusal is an event; MediaStrikes of them within
// MediaWindow ban the source, fewer spread over longer do not, and an allow-listed source is
// never banned for it.
func TestMediaRefusalsBan(t *testing.T) {
	g, st, clk := newTestGuard(t, func(c *Config) { c.Allow = []string{"192.0.2.0/24"} })
	slow := netip.MustParseAddrPort("198.51.100.8:5060")
	for range 2 * MediaStrikes {
		g.MediaRefused(slow, "UDP", 503, "source holds too many ports")
		clk.Add(MediaWindow/(MediaStrikes-1) + time.Second)
	}
	if _, ok := st.State().Ban(netip.PrefixFrom(slow.Addr(), 32)); ok {
		t.Fatal("refusals spread over more than the window banned the source")
	}
	fast := netip.MustParseAddrPort("198.51.100.9:5060")
	for range MediaStrikes {
		g.MediaRefused(fast, "UDP", 488, "too many media streams")
	}
	if b, ok := st.State().Ban(netip.PrefixFrom(fast.Addr(), 32)); !ok || b.Rule != RuleMediaPorts {
		t.Fatalf("ban %+v, want one for %s", b, RuleMediaPorts)
	}
	if v := g.Check(invite(fast.String())); v.Rule != RuleBanned {
		t.Fatalf("after the ban: %+v", v)
	}
	partner := netip.MustParseAddrPort("192.0.2.5:5060")
	for range 2 * MediaStrikes {
		g.MediaRefused(partner, "UDP", 503, "source holds too many ports")
	}
	if _, ok := st.State().Ban(netip.PrefixFrom(partner.Addr(), 32)); ok || !g.Exempt(partner.Addr()) {
		t.Fatal("an allow-listed source was banned, or is not exempt")
	}
	if n := len(g.Recent(EventFilter{Rule: RuleMediaPorts}, 0)); n != 5*MediaStrikes {
		t.Fatalf("%d media-ports events, want %d", n, 5*MediaStrikes)
	}
}
