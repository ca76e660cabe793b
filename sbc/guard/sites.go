package guard

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// siteMemory is how long the guard remembers an address (or IPv6 /64) that rooms registered
// from after its last registration. A site whose network was down long enough for the
// registrar to drop its rooms' bindings (two missed keepalives, or expiry) comes back with
// every room at once, from new NAT ports: it must be served as the site it is, not banned as
// a flood (the avalanche that makes other SBCs ban their own customers). A month covers a
// building powered down over a long holiday.
const siteMemory = 30 * 24 * time.Hour

// site is what the guard remembers of one: the most rooms registered from it at once, and
// until when it lost its site budget for misbehaving (demoted).
type site struct {
	rooms   int
	seen    time.Time
	demoted time.Time
}

// sites remembers the addresses rooms registered from. Every node's guard builds it from the
// replicated bindings, so a site that comes back through another node is known there too.
type sites struct {
	mu sync.RWMutex
	m  map[netip.Addr]site
}

// rooms returns the most rooms remembered behind a's unit (0: not a site), and whether the
// site is demoted at now.
func (s *sites) rooms(a netip.Addr, now time.Time) (int, bool) {
	k := sourceKey(a)
	s.mu.RLock()
	st := s.m[k]
	s.mu.RUnlock()
	return st.rooms, now.Before(st.demoted)
}

// demote takes a's site budget away until until.
func (s *sites) demote(a netip.Addr, until, now time.Time) {
	k := sourceKey(a)
	s.mu.Lock()
	if s.m == nil {
		s.m = map[netip.Addr]site{}
	}
	st := s.m[k]
	if st.seen.IsZero() {
		st.seen = now
	}
	st.demoted = until
	s.m[k] = st
	s.mu.Unlock()
}

// saw records that rooms rooms are registered behind a at now.
func (s *sites) saw(a netip.Addr, rooms int, now time.Time) {
	if rooms <= 0 {
		return
	}
	k := sourceKey(a)
	s.mu.Lock()
	if s.m == nil {
		s.m = map[netip.Addr]site{}
	}
	old, ok := s.m[k]
	if ok && now.Sub(old.seen) < siteMemory {
		rooms = max(rooms, old.rooms)
	}
	s.m[k] = site{rooms: rooms, seen: now, demoted: old.demoted}
	s.mu.Unlock()
}

// prune forgets sites not seen for siteMemory.
func (s *sites) prune(now time.Time) {
	s.mu.Lock()
	for k, st := range s.m {
		if now.Sub(st.seen) >= siteMemory && !now.Before(st.demoted) {
			delete(s.m, k)
		}
	}
	s.mu.Unlock()
}

// bindingPut records the site of a binding just put into the state.
func (g *Guard) bindingPut(c state.Command) {
	b, err := state.BindingOf(c) // binary or JSON payload
	if err != nil {
		return
	}
	ap, err := netip.ParseAddrPort(b.Source)
	if err != nil {
		return
	}
	g.sites.saw(ap.Addr(), g.store.State().RegisteredBehind(ap.Addr()), g.cfg.Now())
}

// rememberSites records the sites of every binding in the state (at start and after a snapshot).
func (g *Guard) rememberSites() {
	st := g.store.State()
	now := g.cfg.Now()
	for _, b := range st.AllBindings(time.Time{}) {
		if ap, err := netip.ParseAddrPort(b.Source); err == nil {
			g.sites.saw(ap.Addr(), st.RegisteredBehind(ap.Addr()), now)
		}
	}
}

// siteRooms is how many rooms a source's address (or /64) holds: registered now, or the most
// remembered from the last siteMemory; 0 while the site is demoted (it earns no budget).
func (g *Guard) siteRooms(a netip.Addr, now time.Time) int {
	n, demoted := g.sites.rooms(a, now)
	if demoted {
		return 0
	}
	return max(g.store.State().RegisteredBehind(a), n)
}

// isSite reports whether rooms registered from a's address (or /64), now or within
// siteMemory, demoted or not: such a prefix is banned for brute force only (see protected).
func (g *Guard) isSite(a netip.Addr) (rooms int, ok bool) {
	n, _ := g.sites.rooms(a, time.Time{})
	n = max(g.store.State().RegisteredBehind(a), n)
	return n, n > 0
}

// Site is an address (or IPv6 /64) that rooms registered from, as the guard sees it.
type Site struct {
	Prefix netip.Prefix `json:"prefix"`
	// Rooms is how many bindings are registered from it now; MostRooms the most at once
	// within the memory window (what its request budget is scaled by).
	Rooms     int       `json:"rooms"`
	MostRooms int       `json:"most_rooms"`
	LastSeen  time.Time `json:"last_seen"` // its last registration
	// DemotedUntil: it brute-forced, enumerated or scanned and has a stranger's budget until then.
	DemotedUntil time.Time `json:"demoted_until,omitzero"`
}

// Sites returns the sites the guard knows, sorted by prefix.
func (g *Guard) Sites() []Site {
	now := g.cfg.Now()
	st := g.store.State()
	g.sites.mu.RLock()
	out := make([]Site, 0, len(g.sites.m))
	for k, s := range g.sites.m {
		if now.Sub(s.seen) >= siteMemory && !now.Before(s.demoted) {
			continue // waiting for the prune
		}
		v := Site{Prefix: banPrefix(k), MostRooms: s.rooms, LastSeen: s.seen.UTC()}
		if now.Before(s.demoted) {
			v.DemotedUntil = s.demoted.UTC()
		}
		out = append(out, v)
	}
	g.sites.mu.RUnlock()
	for i := range out {
		out[i].Rooms = st.RegisteredBehind(out[i].Prefix.Addr())
		out[i].MostRooms = max(out[i].MostRooms, out[i].Rooms)
	}
	slices.SortFunc(out, func(a, b Site) int {
		return cmp.Or(a.Prefix.Addr().Compare(b.Prefix.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()))
	})
	return out
}
