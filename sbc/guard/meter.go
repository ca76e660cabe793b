package guard

import (
	"fmt"
	"net/netip"
	"time"
)

// Datagram meters one UDP datagram from src before it is parsed, and reports whether it may
// go on. Every untrusted source (an IPv4 address, an IPv6 /64) may send DatagramRate
// datagrams per second with bursts of DatagramBurst, requests, responses and retransmissions
// alike. Check only ever sees new out-of-dialog requests: without this meter a source could
// make the node parse without limit, and have its transaction layer answer every copy of a
// retransmitted request (a reflector toward a spoofed address). Over the limit, allow-listed
// sources, the node's own addresses, sites (addresses rooms registered from, not demoted) and
// those Config.Trusted names (the other cluster nodes) still pass; for anyone else the
// datagram is dropped, the first drop in a second leaves a rate-limit event, and
// FloodRefusals drops within FloodWindow ban the source.
// The budget of a far end grows with the active call legs it has through the node (CallsWith).
// A metered datagram does not allocate, nor does a dropped one that leaves no event; a source's
// first one allocates its table entry.
func (g *Guard) Datagram(src netip.AddrPort) bool { return g.meter(src, "UDP") }

// StreamMessage meters one complete message read from a TCP or TLS connection (transport) with
// the same bucket as Datagram: a stream peer cannot make the node parse more than a datagram
// peer could. The edge closes a connection that goes over.
func (g *Guard) StreamMessage(src netip.AddrPort, transport string) bool {
	return g.meter(src, transport)
}

func (g *Guard) meter(src netip.AddrPort, transport string) bool {
	if g.cfg.DatagramRate <= 0 {
		return true
	}
	nowT := g.cfg.Now()
	now := nowT.UnixNano()
	a := src.Addr().Unmap().WithZone("")
	// A far end with many calls through us (a conferencing service, a partner's gateway)
	// sends in proportion: each active call leg with it adds a source's budget.
	rate, burst := scaled(g.cfg.DatagramRate, float64(g.cfg.DatagramBurst), g.store.State().CallsWith(a), maxPeerCalls)
	k := sourceKey(a)
	sh := g.table.shard(k)
	sh.mu.Lock()
	s := sh.get(k, g.table.perShard)
	s.seen = now
	if s.packets.take(now, rate, burst) {
		sh.mu.Unlock()
		return true
	}
	sh.mu.Unlock()
	if g.trusted(a, src, nowT) {
		return true
	}
	sh.mu.Lock()
	flood := s != sh.overflow && s.flooded(now, g.cfg.FloodRefusals, g.cfg.FloodWindow)
	event := flood || now-s.meterEvent >= int64(time.Second)
	if event {
		s.meterEvent = now
	}
	sh.mu.Unlock()
	r := &Request{Source: src, Transport: transport}
	switch {
	case flood:
		why := fmt.Sprintf("%d datagrams or requests over the rate limit within %s", g.cfg.FloodRefusals, g.cfg.FloodWindow)
		g.refuse(r, "", ridFlood, Drop, 0, g.banFor(a, ridFlood, why, nowT), nowT)
	case event:
		g.refuse(r, "", ridRateLimit, Drop, 0, fmt.Sprintf("more than %g datagrams or messages/s (burst %g) before parsing; "+
			"further drops this second leave no event", rate, burst), nowT)
	}
	return false
}

// maxPeerCalls caps how many active call legs with one far end raise its datagram budget.
const maxPeerCalls = 10_000

// trusted reports whether the datagram meter lets a source over its limit pass: allow-listed,
// ours, an address (or IPv6 /64) that rooms registered from, or trusted by Config.Trusted.
func (g *Guard) trusted(a netip.Addr, src netip.AddrPort, now time.Time) bool {
	return g.lists.Load().allow.MatchSource(a) || g.hosts.IsAddr(a) || g.siteRooms(a, now) > 0 ||
		(g.cfg.Trusted != nil && g.cfg.Trusted(src))
}
