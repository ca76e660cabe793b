package guard

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"go4.org/netipx"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// banSet is the cluster's bans in force, compiled for lock-free lookups.
type banSet struct {
	ips  *netipx.IPSet
	next int64 // earliest Until (Unix ns) among them; 0 when none
}

// strike is this node's memory of a prefix it banned, so that bans keep growing after the
// cluster forgot an expired one.
type strike struct {
	n     int
	until time.Time
}

// forgetStrikes: a prefix that stayed out of trouble this long after its ban starts over.
const forgetStrikes = 7 * 24 * time.Hour

// storeBanned reports whether a is inside a ban of the cluster state.
func (g *Guard) storeBanned(a netip.Addr, now int64) bool {
	bs := g.bans.Load()
	if (bs.next != 0 && now >= bs.next) || (g.bansDirty.Load() && g.rebuildDue()) {
		bs = g.refreshBans(now)
	}
	return bs.ips.Contains(a)
}

// rebuildDue reports whether a changed ban set may be rebuilt now: at once while builds are
// cheap (under a millisecond), else after ten times the last build's cost, so that a storm of
// bans over a large set cannot spend more than a tenth of a core rebuilding. Run's ticker
// catches up with changes held back.
func (g *Guard) rebuildDue() bool {
	cost := g.banCost.Load()
	return cost < int64(time.Millisecond) || mono()-g.banBuilt.Load() >= 10*cost
}

// refreshBans rebuilds the ban set from the state. Concurrent callers use the old set rather
// than wait.
func (g *Guard) refreshBans(now int64) *banSet {
	if !g.banBuild.TryLock() {
		return g.bans.Load()
	}
	defer g.banBuild.Unlock()
	start := mono()
	g.bansDirty.Store(false) // before reading: a change while we read marks it again
	var b netipx.IPSetBuilder
	var next int64
	for _, ban := range g.store.State().Bans(time.Unix(0, now)) {
		b.AddPrefix(ban.Prefix)
		if u := ban.Until.UnixNano(); next == 0 || u < next {
			next = u
		}
	}
	ips, err := b.IPSet()
	if err != nil {
		g.log.Error("guard: cannot build ban set", "error", err)
		ips = &netipx.IPSet{}
	}
	bs := &banSet{ips: ips, next: next}
	g.bans.Store(bs)
	end := mono()
	g.banCost.Store(end - start)
	g.banBuilt.Store(end)
	return bs
}

// lifted forgets this node's bans and strikes inside a lifted prefix: an admin lifting a ban
// means the source should start over.
func (g *Guard) lifted(c state.Command) {
	var k struct {
		Prefix netip.Prefix `json:"prefix"`
	}
	if err := json.Unmarshal(c.Payload, &k); err != nil || !k.Prefix.IsValid() {
		return
	}
	p := normPrefix(k.Prefix)
	g.banMu.Lock()
	for q := range g.strikes {
		if q.Overlaps(p) {
			delete(g.strikes, q)
		}
	}
	g.banMu.Unlock()
	g.liftEpoch.Add(1)
}

// banLength is the ban of the n-th strike: BanTime doubled per earlier strike, at most BanMax.
func (g *Guard) banLength(n int) time.Duration {
	d := g.cfg.BanTime
	for i := 1; i < n && d < g.cfg.BanMax; i++ {
		d *= 2
	}
	return min(d, g.cfg.BanMax)
}

// banFor bans src's prefix for rule and returns the refusal reason: why, and the ban or why
// there is none.
func (g *Guard) banFor(src netip.Addr, rule ruleID, why string, now time.Time) string {
	until, strikes, ok, protected := g.ban(src, rule, why, now)
	switch {
	case protected != "":
		return why + "; not banned: " + protected
	case !ok:
		return why
	case strikes == 0:
		return fmt.Sprintf("%s; banned until %s", why, until.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("%s; banned for %s (strike %d)", why, until.Sub(now).Round(time.Second), strikes)
}

// ban bans src's prefix. strikes is 0 when a ban was already in force (until is its end).
// protected says why the prefix may not be banned.
func (g *Guard) ban(src netip.Addr, rule ruleID, why string, now time.Time) (until time.Time, strikes int, ok bool, protected string) {
	p := banPrefix(src)
	if why, site := g.protected(p, rule); why != "" {
		if site {
			// A site is not banned (its rooms would be locked out) but, for what only an
			// attacker does (brute force, enumeration, a scanner), loses its site budget:
			// whoever is at it there gets a stranger's rate until the ban would have ended.
			// Volume alone (flood) does not demote: that is what a site coming back looks like.
			until := now.Add(g.cfg.BanTime)
			g.sites.demote(src, until, now)
			why += "; its request budget is a stranger's until " + until.UTC().Format(time.RFC3339)
		}
		g.log.Warn("guard: not banning a protected source", "prefix", p, "rule", rule.String(), "reason", why)
		return time.Time{}, 0, false, why
	}
	g.banMu.Lock()
	st := g.strikes[p]
	if st.until.After(now) {
		g.banMu.Unlock()
		g.markBanned(src, st.until)
		return st.until, 0, true, ""
	}
	strikes = st.n
	if b, found := g.store.State().Ban(p); found {
		if b.Until.After(now) {
			g.banMu.Unlock()
			g.markBanned(src, b.Until)
			return b.Until, 0, true, ""
		}
		strikes = max(strikes, b.Strikes)
	}
	strikes++
	until = now.Add(g.banLength(strikes))
	g.strikes[p] = strike{n: strikes, until: until}
	g.banMu.Unlock()
	g.markBanned(src, until)
	if g.cfg.OnBan != nil {
		g.cfg.OnBan(p, until)
	}
	g.store.Enqueue(state.PutBan(state.Ban{
		Prefix: p, Rule: rule.String(), Reason: why, Strikes: strikes,
		Created: now, Until: until, Node: g.cfg.NodeID,
	}))
	g.log.Warn("guard banned source", "prefix", p, "rule", rule.String(), "reason", why,
		"strikes", strikes, "until", until)
	return until, strikes, true, ""
}

// markBanned enforces a ban on this node at once, before the cluster applied it.
func (g *Guard) markBanned(src netip.Addr, until time.Time) {
	k := sourceKey(src)
	sh := g.table.shard(k)
	sh.mu.Lock()
	s := sh.get(k, g.table.perShard)
	if u := until.UnixNano(); u > s.banUntil || s.banEpoch != g.liftEpoch.Load() {
		s.banUntil = u
	}
	s.banEpoch = g.liftEpoch.Load()
	sh.mu.Unlock()
}

// protected says why ban prefix p (a /32 or /64, see banPrefix) must not be banned for rule
// ("" when it may): it holds an allow-listed source or one of our node addresses, it is a site
// (rooms registered from it; demote reports that it should lose its site budget instead,
// unless the rule is flood: volume is what a site coming back looks like) and the rule is not
// brute-force (a guest behind the site's NAT guessing passwords is banned like anyone: the
// edge still admits the rooms' registered flows, see Node.admit), or, for flood
// only, it has active calls through the cluster (its scaled rate limit meets the volume; a ban
// would cut the calls). A spoofed UDP packet must not lock a room or a partner out.
func (g *Guard) protected(p netip.Prefix, rule ruleID) (why string, demote bool) {
	if g.lists.Load().allow.overlaps(p) {
		return "it holds an allow-listed source", false
	}
	for _, a := range g.cfg.NodeAddrs {
		if p.Contains(a) {
			return "it holds one of our node addresses", false
		}
	}
	if n, ok := g.isSite(p.Addr()); ok && rule != ridBruteForce {
		return fmt.Sprintf("it is a site that rooms registered from (%d at most, within %s)", n, siteMemory), rule != ridFlood
	}
	if n := g.store.State().CallsWith(p.Addr()); n > 0 && rule == ridFlood {
		return fmt.Sprintf("it has %d active call legs through this cluster", n), false
	}
	return "", false
}

// pruneStrikes forgets strikes of prefixes that behaved for forgetStrikes after their ban.
func (g *Guard) pruneStrikes(now time.Time) {
	g.banMu.Lock()
	defer g.banMu.Unlock()
	for p, s := range g.strikes {
		if now.Sub(s.until) > max(forgetStrikes, g.cfg.BanMax) {
			delete(g.strikes, p)
		}
	}
}
