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
	var deny []netip.Prefix
	for _, e := range n.cfg.Guard.Deny {
		if p, err := netip.ParsePrefix(e); err == nil {
			deny = append(deny, p.Masked())
		} else if a, err := netip.ParseAddr(e); err == nil {
			deny = append(deny, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	rebuild := func() {
		now := time.Now()
		bans := map[netip.Prefix]time.Time{}
		for _, b := range n.store.State().Bans(now) {
			bans[b.Prefix] = b.Until
		}
		n.blocklist.Set(deny, bans, now)
	}
	rebuild()
	kick := make(chan struct{}, 1)
	n.store.State().Observe(func(c state.Command) {
		switch c.Type {
		case state.CmdPutBan, state.CmdLiftBan, state.CmdExpire, 0: // 0: a snapshot was restored
			select {
			case kick <- struct{}{}:
			default:
			}
		}
	})
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

// admit is the edge's pre-parse admission check: no lock, no allocation.
func (n *Node) admit(src netip.Addr) bool { return !n.blocklist.Blocked(src) }
