package edge

import (
	"net/netip"
	"sync/atomic"
	"time"

	"go4.org/netipx"
)

// Blocklist is the set of source prefixes refused before parsing: the cluster's bans and the
// configured deny CIDRs. Lookups are lock-free and allocation-free (an atomic pointer to an
// immutable prefix set); Set swaps in a new set built off the packet path.
type Blocklist struct {
	set atomic.Pointer[blockSet]
}

type blockSet struct {
	ips       *netipx.IPSet // deny and bans
	deny      *netipx.IPSet // deny alone
	nextCheck time.Time     // earliest ban expiry: after it the set is stale and must be rebuilt
}

// Set replaces the list: deny prefixes forever, bans until their time. Expired bans are left out.
func (b *Blocklist) Set(deny []netip.Prefix, bans map[netip.Prefix]time.Time, now time.Time) {
	var sb, db netipx.IPSetBuilder
	for _, p := range deny {
		sb.AddPrefix(p)
		db.AddPrefix(p)
	}
	var next time.Time
	for p, until := range bans {
		if !until.After(now) {
			continue
		}
		sb.AddPrefix(p)
		if next.IsZero() || until.Before(next) {
			next = until
		}
	}
	ips, err := sb.IPSet()
	if err != nil {
		return // only invalid prefixes can fail; keep the previous set
	}
	dips, err := db.IPSet()
	if err != nil {
		return
	}
	b.set.Store(&blockSet{ips: ips, deny: dips, nextCheck: next})
}

// Blocked reports whether packets from src are refused.
func (b *Blocklist) Blocked(src netip.Addr) bool {
	s := b.set.Load()
	return s != nil && s.ips.Contains(src)
}

// Denied reports whether src is refused by a deny prefix (not only by a ban).
func (b *Blocklist) Denied(src netip.Addr) bool {
	s := b.set.Load()
	return s != nil && s.deny.Contains(src)
}

// Stale reports whether a ban in the set has expired since it was built (the owner rebuilds).
func (b *Blocklist) Stale(now time.Time) bool {
	s := b.set.Load()
	return s != nil && !s.nextCheck.IsZero() && now.After(s.nextCheck)
}
