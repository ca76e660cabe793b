package guard

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// TestDatagramMeter: an untrusted source gets DatagramBurst datagrams at once and
// DatagramRate per second after that; drops leave one rate-limit event per second, and
// FloodRefusals drops within FloodWindow ban the source. Trusted sources (Config.Trusted),
// allow-listed ones and the node's own addresses are never dropped; -1 turns the meter off.
func TestDatagramMeter(t *testing.T) {
	trustedSrc := netip.MustParseAddrPort("198.51.100.50:5060")
	g, st, clk := newTestGuard(t, func(c *Config) {
		c.DatagramRate, c.DatagramBurst = 10, 20
		c.FloodRefusals, c.FloodWindow = 50, 10*time.Second
		c.Allow = []string{"203.0.113.0/24"}
		c.Trusted = func(src netip.AddrPort) bool { return src == trustedSrc }
	})
	src := netip.MustParseAddrPort("198.51.100.7:40000")
	passed := 0
	for range 30 {
		if g.Datagram(src) {
			passed++
		}
	}
	if passed != 20 {
		t.Fatalf("%d of 30 datagrams passed at once, want the burst of 20", passed)
	}
	evs := g.Recent(EventFilter{}, 10)
	if len(evs) != 1 || evs[0].Rule != RuleRateLimit || evs[0].Action != Drop || !strings.Contains(evs[0].Reason, "datagrams or messages/s") {
		t.Fatalf("events after 10 drops in a second: %+v, want one rate-limit event", evs)
	}
	// Half a second refills 5; another port of the same address shares the bucket.
	clk.Add(500 * time.Millisecond)
	passed = 0
	for range 10 {
		if g.Datagram(netip.MustParseAddrPort("198.51.100.7:40002")) {
			passed++
		}
	}
	if passed != 5 {
		t.Fatalf("%d datagrams passed after 500ms, want 5", passed)
	}
	clk.Add(600 * time.Millisecond) // 6 tokens; drops a second after the first event leave another
	for range 10 {
		g.Datagram(src)
	}
	if n := len(g.Recent(EventFilter{Rule: RuleRateLimit}, 10)); n != 2 {
		t.Fatalf("%d rate-limit events, want 2 (one per second)", n)
	}
	// Trusted sources pass whatever they send.
	for _, a := range []string{trustedSrc.String(), "203.0.113.9:5060", nodeIP.String() + ":5060"} {
		for i := range 100 {
			if !g.Datagram(netip.MustParseAddrPort(a)) {
				t.Fatalf("%s: datagram %d dropped", a, i)
			}
		}
	}
	// Keeping on past the limit is a flood: banned.
	for range 60 {
		g.Datagram(src)
	}
	if b, ok := st.State().Ban(netip.MustParsePrefix("198.51.100.7/32")); !ok || b.Rule != RuleFlood {
		t.Fatalf("no flood ban after 60 more drops: %+v %v", b, ok)
	}
	if v := g.Check(invite("198.51.100.7:5060")); v.Rule != RuleBanned {
		t.Fatalf("banned source's INVITE: %+v", v)
	}

	off, _, _ := newTestGuard(t, func(c *Config) { c.DatagramRate = -1 })
	for i := range 5000 {
		if !off.Datagram(src) {
			t.Fatalf("meter off: datagram %d dropped", i)
		}
	}
}

// BenchmarkDatagram: a datagram from a known source within its rate.
func BenchmarkDatagram(b *testing.B) {
	g, _, _ := newTestGuard(b, func(c *Config) { c.DatagramRate = 1e12 })
	src := netip.MustParseAddrPort("198.51.100.7:40000")
	g.Datagram(src)
	b.ReportAllocs()
	for b.Loop() {
		if !g.Datagram(src) {
			b.Fatal("dropped")
		}
	}
}

// TestDatagramMeterTableFull: when the per-source table is full, new sources share an overflow
// bucket per shard; their drops are not turned into a ban of whichever source came last.
func TestDatagramMeterTableFull(t *testing.T) {
	g, st, _ := newTestGuard(t, func(c *Config) {
		c.DatagramRate, c.DatagramBurst, c.FloodRefusals = 10, 10, 5
		c.MaxSources = shardCount // one source per shard
	})
	for i := range 4 * shardCount {
		g.Datagram(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 5060))
	}
	late := netip.MustParseAddrPort("198.51.100.99:5060")
	for range 200 {
		g.Datagram(late)
	}
	if bans := st.State().Bans(time.Time{}); len(bans) != 0 {
		t.Fatalf("bans from a shared overflow bucket: %+v", bans)
	}
}

// TestSiteComesBack: 300 rooms are registered from one customer NAT address. An outage outlasts
// the keepalives and the registrar drops every binding; then the rooms all re-register at once
// from new ports (REGISTER, then REGISTER with credentials, and their keepalives). The guard
// remembers the site: its request budget grows with its rooms, so nothing is refused, the
// datagram meter lets it through, and it is never banned. A stranger sending the same is
// rate-limited after the usual burst and banned. siteMemory after the site's last registration
// it is forgotten.
func TestSiteComesBack(t *testing.T) {
	g, st, clk := newTestGuard(t, func(c *Config) { c.DatagramRate, c.DatagramBurst = 100, 200 })
	const rooms = 300
	site := netip.MustParseAddr("198.51.100.20")
	exp := time.Date(2030, 1, 2, 4, 0, 0, 0, time.UTC)
	for i := range rooms {
		b := state.Binding{Room: fmt.Sprintf("r%d", i), Contact: fmt.Sprintf("sip:r%d@x", i),
			Source: netip.AddrPortFrom(site, uint16(20000+i)).String(), Node: "node-1", Expires: exp}
		if err := st.Propose(context.Background(), state.PutRoom(state.Room{Name: b.Room, Inbound: state.InboundOpen})); err != nil {
			t.Fatal(err)
		}
		if err := st.Propose(context.Background(), state.PutBinding(b)); err != nil {
			t.Fatal(err)
		}
	}
	register := func(src netip.AddrPort, room int) *Request {
		u := fmt.Sprintf("r%d", room)
		return &Request{Source: src, Transport: "UDP", Method: "REGISTER", RURIHost: testDomain,
			FromUser: u, FromHost: testDomain, ToUser: u, ToHost: testDomain, CallID: u, MaxForwards: 70}
	}
	comeBack := func(a netip.Addr) (refused int) {
		for i := range rooms {
			src := netip.AddrPortFrom(a, uint16(40000+i)) // the NAT hands out new ports
			for range 2 {
				if !g.Datagram(src) || g.Check(register(src, i)).Action != Allow {
					refused++
				}
				g.Datagram(src) // the 401 or 200's keepalive traffic
			}
		}
		return refused
	}
	if err := st.Propose(context.Background(), state.DeleteNodeBindings("node-1")); err != nil {
		t.Fatal(err)
	}
	if n := st.State().RegisteredBehind(site); n != 0 {
		t.Fatalf("%d bindings left", n)
	}
	if n := comeBack(site); n != 0 {
		t.Fatalf("the site's rooms were refused %d times: %+v", n, g.Recent(EventFilter{}, 5))
	}
	if _, banned := st.State().Ban(netip.PrefixFrom(site, 32)); banned {
		t.Fatal("the site was banned")
	}
	stranger := netip.MustParseAddr("203.0.113.77")
	if n := comeBack(stranger); n < rooms {
		t.Fatalf("a stranger sending the same was refused only %d times", n)
	}
	if _, banned := st.State().Ban(netip.PrefixFrom(stranger, 32)); !banned {
		t.Fatal("the stranger was not banned")
	}
	clk.Add(siteMemory + time.Minute)
	g.prune(clk.Now())
	if g.siteRooms(site, clk.Now()) != 0 {
		t.Fatal("the site is remembered siteMemory after its last registration")
	}
}

// TestNewSiteRegisters: 300 rooms of a site nobody has seen yet boot at the same moment. The
// first requests spend a stranger's budget, but every room that registers makes the address a
// site and adds to its budget, and a site is never banned: with UDP retransmissions every
// 500 ms all rooms are registered within seconds.
func TestNewSiteRegisters(t *testing.T) {
	g, st, clk := newTestGuard(t, nil)
	const rooms = 300
	site := netip.MustParseAddr("198.51.100.30")
	ctx := context.Background()
	for i := range rooms {
		if err := st.Propose(ctx, state.PutRoom(state.Room{Name: fmt.Sprintf("n%d", i), Inbound: state.InboundOpen})); err != nil {
			t.Fatal(err)
		}
	}
	registered := make([]bool, rooms)
	left, rounds := rooms, 0
	for ; left > 0 && rounds < 40; rounds++ {
		for i := range rooms {
			if registered[i] {
				continue
			}
			u := fmt.Sprintf("n%d", i)
			src := netip.AddrPortFrom(site, uint16(30000+i))
			req := &Request{Source: src, Transport: "UDP", Method: "REGISTER", RURIHost: testDomain,
				FromUser: u, FromHost: testDomain, ToUser: u, ToHost: testDomain, CallID: u, MaxForwards: 70}
			// REGISTER (401), then REGISTER with credentials (200): both must pass the guard
			if g.Check(req).Action != Allow || g.Check(req).Action != Allow {
				continue
			}
			b := state.Binding{Room: u, Contact: "sip:" + u + "@x", Source: src.String(), Node: "node-1", Expires: clk.Now().Add(time.Hour)}
			if err := st.Propose(ctx, state.PutBinding(b)); err != nil {
				t.Fatal(err)
			}
			registered[i] = true
			left--
		}
		clk.Add(500 * time.Millisecond) // the others retransmit
	}
	t.Logf("%d rooms registered after %d rounds of 500 ms", rooms-left, rounds)
	if left > 0 {
		t.Fatalf("%d rooms still unregistered after %d rounds", left, rounds)
	}
	if _, banned := st.State().Ban(netip.PrefixFrom(site, 32)); banned {
		t.Fatal("the new site was banned")
	}
}

// TestSiteBannedForBruteForce (issue #14 item 5): a source on a site's address (a guest
// behind the rooms' NAT) that guesses passwords used to be only demoted, and could go on
// guessing at a stranger's rate. It is now banned like any other source once it reaches
// AuthFailures; the rooms' registered flows on that address are not touched (Check lets a
// registered flow through, and the node's edge admits flows despite the ban).
func TestSiteBannedForBruteForce(t *testing.T) {
	g, st, clk := newTestGuard(t, nil)
	site := netip.MustParseAddr("198.51.100.40")
	ctx := context.Background()
	for i := range 50 {
		name := fmt.Sprintf("d%d", i)
		if err := st.Propose(ctx, state.PutRoom(state.Room{Name: name, Inbound: state.InboundOpen})); err != nil {
			t.Fatal(err)
		}
		b := state.Binding{Room: name, Contact: "sip:" + name + "@x", Source: netip.AddrPortFrom(site, uint16(20000+i)).String(),
			Node: "node-1", Expires: clk.Now().Add(time.Hour)}
		if err := st.Propose(ctx, state.PutBinding(b)); err != nil {
			t.Fatal(err)
		}
	}
	attacker := netip.AddrPortFrom(site, 55555)
	for range g.cfg.AuthFailures {
		g.AuthFailed(attacker, "d1", "UDP")
	}
	if _, banned := st.State().Ban(netip.PrefixFrom(site, 32)); !banned {
		t.Fatal("a site source that brute-forced is not banned")
	}
	if !g.Banned(attacker) {
		t.Fatal("Banned(attacker) = false")
	}
	evs := g.Recent(EventFilter{Rule: RuleBruteForce}, 1)
	if len(evs) != 1 || !strings.Contains(evs[0].Reason, "banned") {
		t.Fatalf("brute-force event: %+v", evs)
	}
	if v := g.Check(with(invite(attacker.String()), func(r *Request) {})); v.Allowed() {
		t.Fatal("the banned guest's INVITE passed")
	}
	flow := netip.AddrPortFrom(site, 20001)
	if v := g.Check(with(invite(flow.String()), func(r *Request) { r.Registered = true })); !v.Allowed() {
		t.Fatalf("a room's registered flow on the banned site is refused: %+v", v)
	}
	// Volume alone (flood) still never bans a site.
	if why, _ := g.protected(netip.PrefixFrom(site, 32), ridFlood); why == "" {
		t.Fatal("a site is not protected from flood bans")
	}
}

// TestStreamMessageMeter: messages on a TCP/TLS connection spend the same bucket as datagrams,
// and the event names the transport.
func TestStreamMessageMeter(t *testing.T) {
	g, _, _ := newTestGuard(t, func(c *Config) { c.DatagramRate, c.DatagramBurst = 10, 5 })
	src := netip.MustParseAddrPort("198.51.100.8:40000")
	for range 3 {
		g.Datagram(src)
	}
	passed := 0
	for range 5 {
		if g.StreamMessage(src, "TLS") {
			passed++
		}
	}
	evs := g.Recent(EventFilter{Rule: RuleRateLimit}, 5)
	if passed != 2 || len(evs) != 1 || evs[0].Transport != "TLS" {
		t.Fatalf("%d of 5 messages passed after 3 datagrams (burst 5); events %+v", passed, evs)
	}
}

// TestMeterScalesWithCalls: a far end with active calls through the node (a conferencing
// service) gets a datagram budget per call leg; when the calls end it is a stranger again.
func TestMeterScalesWithCalls(t *testing.T) {
	g, st, clk := newTestGuard(t, func(c *Config) { c.DatagramRate, c.DatagramBurst = 10, 20 })
	cloud := netip.MustParseAddr("203.0.113.200")
	ctx := context.Background()
	for i := range 50 {
		c := state.Call{ID: fmt.Sprint("c", i), Room: "boardroom", Node: "node-1", State: state.CallAnswered,
			A: state.Leg{Peer: "198.51.100.1:5060"}, B: state.Leg{Peer: netip.AddrPortFrom(cloud, 5060).String()}}
		if err := st.Propose(ctx, state.PutCall(c)); err != nil {
			t.Fatal(err)
		}
	}
	src := netip.AddrPortFrom(cloud, 5060)
	passed := 0
	for range 2000 {
		if g.Datagram(src) {
			passed++
		}
	}
	if passed != 20*51 {
		t.Fatalf("%d of 2000 datagrams passed, want the burst of 51 sources (%d)", passed, 20*51)
	}
	for i := range 50 {
		if err := st.Propose(ctx, state.EndCall(state.CallRecord{Call: state.Call{ID: fmt.Sprint("c", i)}})); err != nil {
			t.Fatal(err)
		}
	}
	clk.Add(time.Hour)
	passed = 0
	for range 100 {
		if g.Datagram(src) {
			passed++
		}
	}
	if passed != 20 {
		t.Fatalf("%d of 100 datagrams passed after the calls ended, want a stranger's burst of 20", passed)
	}
}

// TestCallPeerNotBannedForFlood: a far end with calls through the node that goes past even its
// scaled budget is rate-limited, not banned (a ban would cut its calls).
func TestCallPeerNotBannedForFlood(t *testing.T) {
	g, st, _ := newTestGuard(t, func(c *Config) { c.DatagramRate, c.DatagramBurst, c.FloodRefusals = 10, 20, 5 })
	peer := netip.MustParseAddr("203.0.113.201")
	c := state.Call{ID: "c1", Room: "boardroom", Node: "node-1", State: state.CallAnswered,
		A: state.Leg{Peer: netip.AddrPortFrom(peer, 5060).String()}, B: state.Leg{Peer: "198.51.100.1:5060"}}
	if err := st.Propose(context.Background(), state.PutCall(c)); err != nil {
		t.Fatal(err)
	}
	for range 500 {
		g.Datagram(netip.AddrPortFrom(peer, 5060))
	}
	if _, banned := st.State().Ban(netip.PrefixFrom(peer, 32)); banned {
		t.Fatal("a far end with an active call was banned for volume")
	}
	if evs := g.Recent(EventFilter{Rule: RuleFlood}, 1); len(evs) != 1 || !strings.Contains(evs[0].Reason, "active call legs") {
		t.Fatalf("flood event %+v", evs)
	}
}

// TestDroppedDatagramDoesNotAllocate: under a flood most datagrams are dropped by the meter
// without an event (one per source per second); those drops allocate nothing.
func TestDroppedDatagramDoesNotAllocate(t *testing.T) {
	g, _, _ := newTestGuard(t, func(c *Config) { c.DatagramRate, c.DatagramBurst, c.FloodRefusals = 1, 1, -1 })
	src := netip.MustParseAddrPort("198.51.100.9:40000")
	g.Datagram(src) // the burst
	g.Datagram(src) // the first drop leaves the event
	if n := testing.AllocsPerRun(200, func() {
		if g.Datagram(src) {
			t.Fatal("passed")
		}
	}); n != 0 {
		t.Fatalf("%.1f allocations per dropped datagram", n)
	}
}
