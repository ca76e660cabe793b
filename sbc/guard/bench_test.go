package guard

import (
	"net/netip"
	"testing"
)

// benchGuard has realistic lists and a rate limit that never bites.
func benchGuard(b *testing.B) *Guard {
	g, _, _ := newTestGuard(b, func(c *Config) {
		c.RequestRate, c.RequestBurst = 1e12, 1<<30
		c.Deny = []string{"203.0.113.0/24", "*@spam.example", "evil.example", "*.evil.example", "bad@partner.net", "2001:db8:dead::/48"}
		c.Allow = []string{"10.0.0.0/8", "alice@trusted.example"}
		c.Now = nil // the real clock
	})
	return g
}

// BenchmarkCheckInvite: an INVITE to a room from a known, untrusted source (the full allow path:
// lists, feeds, bans, scanner automaton, rate limit, sanity, caller deny, room lookup).
func BenchmarkCheckInvite(b *testing.B) {
	g := benchGuard(b)
	r := invite("198.51.100.7:5060")
	g.Check(r)
	b.ReportAllocs()
	for b.Loop() {
		if v := g.Check(r); !v.Allowed() {
			b.Fatal(v)
		}
	}
}

// BenchmarkCheckOptions: an OPTIONS ping from a known source.
func BenchmarkCheckOptions(b *testing.B) {
	g := benchGuard(b)
	r := with(invite("198.51.100.7:5060"), func(r *Request) { r.Method, r.RURIUser = "OPTIONS", "" })
	g.Check(r)
	b.ReportAllocs()
	for b.Loop() {
		g.Check(r)
	}
}

// BenchmarkCheckRegistered: a request on a registered room's flow.
func BenchmarkCheckRegistered(b *testing.B) {
	g := benchGuard(b)
	r := with(invite("198.51.100.7:5060"), func(r *Request) { r.Registered = true })
	b.ReportAllocs()
	for b.Loop() {
		g.Check(r)
	}
}

// BenchmarkCheckInviteParallel: many sources on all cores (shard contention).
func BenchmarkCheckInviteParallel(b *testing.B) {
	g := benchGuard(b)
	reqs := make([]*Request, 1024)
	for i := range reqs {
		a := netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
		reqs[i] = invite(netip.AddrPortFrom(a, 5060).String())
		g.Check(reqs[i])
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			g.Check(reqs[i&1023])
			i++
		}
	})
}

// BenchmarkCheckRefusedDeny: a deny-listed source (refusal path: event, count, log limiter).
func BenchmarkCheckRefusedDeny(b *testing.B) {
	g := benchGuard(b)
	r := invite("203.0.113.9:5060")
	b.ReportAllocs()
	for b.Loop() {
		g.Check(r)
	}
}

func BenchmarkScannerMatch(b *testing.B) {
	ua := "Poly/RealPresence Group 500 6.2.2.5 (Linux) (build 123456)"
	defaultUA := compileDefaultUA(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(ua)))
	for b.Loop() {
		if _, ok := defaultUA.match(ua); ok {
			b.Fatal("matched")
		}
	}
}

func BenchmarkMatchCaller(b *testing.B) {
	m, _ := CompilePatterns([]string{"*@spam.example", "evil.example", "*.evil.example", "bad@partner.net", "10??@pbx.example"})
	b.ReportAllocs()
	for b.Loop() {
		if m.MatchCaller("Alice", "Partner.NET") {
			b.Fatal("matched")
		}
	}
}
