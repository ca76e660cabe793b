package guard

import (
	"encoding/json"
	"net/netip"
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

// site is what the guard remembers of one: the most rooms registered from it at once.
type site struct {
	rooms int
	seen  time.Time
}

// sites remembers the addresses rooms registered from. Every node's guard builds it from the
// replicated bindings, so a site that comes back through another node is known there too.
type sites struct {
	mu sync.RWMutex
	m  map[netip.Addr]site
}

// rooms returns the most rooms remembered behind a's unit (0: not a site).
func (s *sites) rooms(a netip.Addr) int {
	k := sourceKey(a)
	s.mu.RLock()
	n := s.m[k].rooms
	s.mu.RUnlock()
	return n
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
	s.m[k] = site{rooms: rooms, seen: now}
	s.mu.Unlock()
}

// prune forgets sites not seen for siteMemory.
func (s *sites) prune(now time.Time) {
	s.mu.Lock()
	for k, st := range s.m {
		if now.Sub(st.seen) >= siteMemory {
			delete(s.m, k)
		}
	}
	s.mu.Unlock()
}

// bindingPut records the site of a binding just put into the state.
func (g *Guard) bindingPut(c state.Command) {
	var b struct {
		Source string `json:"source"`
	}
	if json.Unmarshal(c.Payload, &b) != nil {
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
// remembered from the last siteMemory.
func (g *Guard) siteRooms(a netip.Addr) int {
	return max(g.store.State().RegisteredBehind(a), g.sites.rooms(a))
}
