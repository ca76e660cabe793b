package guard

import (
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// A source whose calls the media relay refused MediaStrikes times within MediaWindow (too many
// m-lines in one call, too many relay ports held by its unanswered calls) is banned: that is
// a port-exhaustion attack, not a room system.
const (
	MediaStrikes = 5
	MediaWindow  = time.Minute
)

// mediaStrikes remembers recent media refusals per source.
type mediaStrikes struct {
	mu sync.Mutex
	at map[netip.Addr][]int64
}

// MediaRefused records that the media relay refused a call from src, which the B2BUA answered
// with code (rule media-ports): an event, a count, a rate-limited log, and a ban of the source
// when it keeps at it.
func (g *Guard) MediaRefused(src netip.AddrPort, transport string, code int, why string) {
	now := g.cfg.Now()
	a := src.Addr().Unmap().WithZone("")
	r := &Request{Source: src, Transport: transport, Method: "INVITE", MaxForwards: -1}
	if a.IsValid() && !g.lists.Load().allow.MatchSource(a) && g.media.strike(a, now.UnixNano()) {
		why = g.banFor(a, ridMediaPorts, fmt.Sprintf("%s; %d such refusals within %s", why, MediaStrikes, MediaWindow), now)
	}
	g.refuse(r, "", ridMediaPorts, Reject, code, why, now)
}

// Exempt reports whether src is allow-listed (its calls are not capped by the media relay).
func (g *Guard) Exempt(src netip.Addr) bool {
	return g.lists.Load().allow.MatchSource(src.Unmap().WithZone(""))
}

// strike counts one refusal of a and reports whether that makes MediaStrikes within
// MediaWindow (the count then starts over).
func (m *mediaStrikes) strike(a netip.Addr, now int64) bool {
	cut := now - int64(MediaWindow)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.at == nil {
		m.at = map[netip.Addr][]int64{}
	}
	if len(m.at) > 4096 { // forget quiet sources; the map only holds refused ones
		for k, v := range m.at {
			if len(v) == 0 || v[len(v)-1] <= cut {
				delete(m.at, k)
			}
		}
	}
	v := m.at[a]
	i := 0
	for i < len(v) && v[i] <= cut {
		i++
	}
	v = append(v[i:], now)
	if len(v) >= MediaStrikes {
		delete(m.at, a)
		return true
	}
	m.at[a] = v
	return false
}
