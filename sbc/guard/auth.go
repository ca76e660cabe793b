package guard

import (
	"fmt"
	"net/netip"
)

// AuthFailed counts a failed login from src (registrar.AuthObserver; the TURN server's too):
// AuthFailures within AuthWindow ban the source (rule brute-force), a site (an address rooms
// registered from) included: the edge still admits the rooms' registered flows. A user that
// is no room also counts as an unknown user for enumeration; one that is a room counts toward
// the room's lock (RoomLocked). Allow-listed sources are never counted.
func (g *Guard) AuthFailed(src netip.AddrPort, user, transport string) {
	now := g.cfg.Now()
	a := src.Addr().Unmap().WithZone("")
	if !a.IsValid() || g.lists.Load().allow.MatchSource(a) {
		return
	}
	r := &Request{Source: src, Transport: transport, FromUser: user, MaxForwards: -1}
	if user != "" && g.isRoom(user) {
		if locked, until, d := g.countRoomFailure(user, now); locked {
			g.lockRoom(r, user, until, d, now)
		}
	}
	if user != "" && !g.isRoom(user) && g.countUnknown(a, user, "", now.UnixNano()) {
		why := fmt.Sprintf("%d different unknown users within %s", g.cfg.UnknownUsers, g.cfg.UnknownWindow)
		g.refuseScan(r, ridEnumeration, 403, g.banFor(a, ridEnumeration, why, now), now)
		return
	}
	k := sourceKey(a)
	sh := g.table.shard(k)
	sh.mu.Lock()
	s := sh.get(k, g.table.perShard)
	s.seen = now.UnixNano()
	cut := now.UnixNano() - int64(g.cfg.AuthWindow)
	i := 0
	for i < len(s.auth) && s.auth[i] <= cut {
		i++
	}
	s.auth = append(s.auth[:0], s.auth[i:]...)
	s.auth = append(s.auth, now.UnixNano())
	hit := len(s.auth) >= g.cfg.AuthFailures
	if hit {
		s.auth = s.auth[:0]
	}
	sh.mu.Unlock()
	if hit {
		why := fmt.Sprintf("%d failed logins within %s (last as %q)", g.cfg.AuthFailures, g.cfg.AuthWindow, clip(user))
		g.refuseScan(r, ridBruteForce, 403, g.banFor(a, ridBruteForce, why, now), now)
	}
}

// AuthSucceeded clears the source's failed logins (registrar.AuthObserver).
func (g *Guard) AuthSucceeded(src netip.AddrPort, user string) {
	k := sourceKey(src.Addr().Unmap().WithZone(""))
	sh := g.table.shard(k)
	sh.mu.Lock()
	if s, ok := sh.m[k]; ok {
		s.auth = s.auth[:0]
	}
	sh.mu.Unlock()
}

// Banned reports whether src's address (or IPv6 /64) is banned: by the cluster, or by this
// node before the cluster applied it. Allow-listed sources never are. For sockets other than
// SIP's (TURN) that drop a banned source before parsing; no allocation.
func (g *Guard) Banned(src netip.AddrPort) bool {
	a := src.Addr().Unmap().WithZone("")
	if !a.IsValid() {
		return false
	}
	now := g.cfg.Now().UnixNano()
	banned := g.storeBanned(a, now)
	if !banned {
		k := sourceKey(a)
		sh := g.table.shard(k)
		sh.mu.Lock()
		if s, ok := sh.m[k]; ok {
			banned = s.banUntil > now && s.banEpoch == g.liftEpoch.Load()
		}
		sh.mu.Unlock()
	}
	return banned && !g.lists.Load().allow.MatchSource(a)
}

// RegistrationFailed records that a configured room's registration failed (wrong password,
// unsupported digest algorithm, challenge not answered): one event under the rule
// registration-failed with the status the room got and why, so a room that never comes up is
// visible. It bans nothing (AuthFailed counts password guesses).
func (g *Guard) RegistrationFailed(src netip.AddrPort, transport, room, userAgent string, code int, reason string) {
	r := &Request{Source: src, Transport: transport, Method: "REGISTER", ToUser: room, UserAgent: userAgent, MaxForwards: -1}
	g.refuse(r, room, ridRegistration, Reject, code, reason, g.cfg.Now())
}
