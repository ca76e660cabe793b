package sbc

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Trunk traffic between the nodes of a cluster grows with the calls they hand each other, so
// the datagram meter must never drop it. The nodes' SIP addresses are learnt two ways: the
// trunk address of every binding another node holds (where this node sends those rooms'
// calls, and so where their responses come from), resolved every peerRefresh; and the source
// of every request that carried a valid trunk signature, remembered for peerMemory.
const (
	peerRefresh = 10 * time.Second
	peerMemory  = time.Hour
)

// trunkPeers is the set of other nodes' SIP addresses. has is lock-free.
type trunkPeers struct {
	set atomic.Pointer[map[netip.Addr]struct{}]

	mu     sync.Mutex
	known  map[netip.Addr]struct{}  // resolved trunk addresses of other nodes' bindings
	signed map[netip.Addr]time.Time // sources of signed trunk requests, last seen
}

func (p *trunkPeers) has(a netip.Addr) bool {
	m := p.set.Load()
	if m == nil {
		return false
	}
	_, ok := (*m)[a.Unmap().WithZone("")]
	return ok
}

// sawSigned remembers the source of a validly signed trunk request.
func (p *trunkPeers) sawSigned(a netip.Addr, now time.Time) {
	a = a.Unmap().WithZone("")
	p.mu.Lock()
	defer p.mu.Unlock()
	last, had := p.signed[a]
	if had && now.Sub(last) < time.Minute {
		return // refreshed at most once a minute: no lock churn per trunk call
	}
	if p.signed == nil {
		p.signed = map[netip.Addr]time.Time{}
	}
	p.signed[a] = now
	if !had {
		p.publish()
	}
}

// setKnown replaces the resolved trunk addresses and forgets signed sources not seen for
// peerMemory.
func (p *trunkPeers) setKnown(known map[netip.Addr]struct{}, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.known = known
	for a, last := range p.signed {
		if now.Sub(last) > peerMemory {
			delete(p.signed, a)
		}
	}
	p.publish()
}

// publish swaps in the union of known and signed. Callers hold mu.
func (p *trunkPeers) publish() {
	m := make(map[netip.Addr]struct{}, len(p.known)+len(p.signed))
	for a := range p.known {
		m[a] = struct{}{}
	}
	for a := range p.signed {
		m[a] = struct{}{}
	}
	p.set.Store(&m)
}

// refreshTrunkPeers resolves the trunk addresses of the bindings other nodes hold.
func (n *Node) refreshTrunkPeers(ctx context.Context) {
	hosts := map[string]struct{}{}
	for _, local := range n.store.State().TrunkAddrs(n.cfg.Node.ID) {
		if h, _, err := net.SplitHostPort(local); err == nil {
			hosts[h] = struct{}{}
		}
	}
	known := map[netip.Addr]struct{}{}
	for h := range hosts {
		if a, err := netip.ParseAddr(h); err == nil {
			known[a.Unmap().WithZone("")] = struct{}{}
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		addrs, err := net.DefaultResolver.LookupNetIP(lctx, "ip", h)
		cancel()
		if err != nil {
			n.log.Debug("trunk peer not resolved", "host", h, "error", err)
			continue
		}
		for _, a := range addrs {
			known[a.Unmap().WithZone("")] = struct{}{}
		}
	}
	n.peers.setKnown(known, time.Now())
}

// runTrunkPeers keeps the set of trunk peers current until ctx ends (a single node has none:
// its refresh reads an empty index).
func (n *Node) runTrunkPeers(ctx context.Context) {
	n.goBackground(func() {
		t := time.NewTicker(peerRefresh)
		defer t.Stop()
		for {
			n.refreshTrunkPeers(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
}
