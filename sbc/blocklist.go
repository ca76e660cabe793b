package sbc

import (
	"context"
	"net/netip"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// startBlocklist keeps the edge's pre-parse blocklist equal to the cluster's bans plus the
// configured deny CIDRs: rebuilt when a ban command is applied on this node (so a ban made on any
// node is enforced here as soon as it is replicated) and when the earliest ban expires.
func (n *Node) startBlocklist(ctx context.Context) {
	deny := listPrefixes(n.cfg.Guard.Deny)
	rebuild := func() {
		now := time.Now()
		bans := map[netip.Prefix]time.Time{}
		for _, b := range n.store.State().Bans(now) {
			bans[b.Prefix] = b.Until
		}
		// this node's own new bans, until the cluster has applied them
		n.localBanMu.Lock()
		for p, until := range n.localBans {
			if _, replicated := bans[p]; replicated || !until.After(now) {
				delete(n.localBans, p)
				continue
			}
			bans[p] = until
		}
		n.localBanMu.Unlock()
		all := append(append([]netip.Prefix{}, deny...), listPrefixes(n.store.State().Lists().Deny)...)
		if n.guard != nil {
			all = append(all, n.guard.FeedPrefixes()...)
		}
		n.blocklist.Set(all, bans, now)
	}
	kick := n.kick
	// Follow the state before the first build (a ban applied in between would wait for the
	// next change to be seen).
	n.store.State().Observe(func(c state.Command) {
		switch c.Type {
		case state.CmdPutBan, state.CmdLiftBan, state.CmdExpire, state.CmdSetLists, state.CmdRestored:
			n.kickBlocklist()
		}
	})
	rebuild()
	n.goBackground(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-kick:
				rebuild()
			case now := <-tick.C:
				if n.blocklist.Stale(now) {
					rebuild()
				}
			}
		}
	})
}

// banLocally enforces a ban this node's guard just made at the edge at once, before the cluster
// has applied it (the next rebuild after the apply takes it from the state).
func (n *Node) banLocally(p netip.Prefix, until time.Time) {
	n.localBanMu.Lock()
	if n.localBans == nil {
		n.localBans = map[netip.Prefix]time.Time{}
	}
	n.localBans[p] = until
	n.localBanMu.Unlock()
	n.kickBlocklist()
}

// kickBlocklist asks for a rebuild of the blocklist (bans, lists or feeds changed).
func (n *Node) kickBlocklist() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// listPrefixes keeps the IP and CIDR entries of a deny list (the others are matched by the guard).
func listPrefixes(entries []string) []netip.Prefix {
	var out []netip.Prefix
	for _, e := range entries {
		if p, err := netip.ParsePrefix(e); err == nil {
			out = append(out, p.Masked())
		} else if a, err := netip.ParseAddr(e); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

// admit is the edge's pre-parse admission check: no lock, no allocation for a source that is
// not blocked. A registered room's flow (its binding's address and port) passes a ban of its
// address: a guest on the room's NAT who guessed passwords is banned, the room is not. A deny
// list or threat feed entry refuses the flow too.
func (n *Node) admit(src netip.AddrPort) bool {
	a := src.Addr()
	if !n.blocklist.Blocked(a) {
		return true
	}
	return !n.blocklist.Denied(a) && n.registeredFlow(src)
}
