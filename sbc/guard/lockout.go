package guard

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// roomLocks counts failed logins per room, from any source: a guesser spread over many
// addresses (a botnet, a guest network behind one NAT that rotates ports) stays under the
// per-source limit but not under the room's. Only names of rooms get an entry, so the map is
// bounded by the rooms configured.
type roomLocks struct {
	mu     sync.Mutex
	m      map[string]*roomLock
	locked atomic.Int32 // rooms locked (or recently): 0 makes RoomLocked lock-free
}

type roomLock struct {
	fails   []int64 // Unix ns of failures within the window, oldest first
	until   int64   // locked until
	strikes int
}

// roomLockForget: a room whose last lock ended this long ago starts over at RoomLockTime.
const roomLockForget = 24 * time.Hour

// countRoomFailure records a failed login for room at now and reports whether it locked the
// room (until when, and for how long).
func (g *Guard) countRoomFailure(room string, now time.Time) (locked bool, until time.Time, d time.Duration) {
	ns := now.UnixNano()
	l := &g.roomLocks
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]*roomLock{}
	}
	r := l.m[room]
	if r == nil {
		r = &roomLock{}
		l.m[room] = r
	}
	if r.until > ns {
		return false, time.Time{}, 0 // already locked
	}
	cut := ns - int64(g.cfg.RoomAuthWindow)
	i := 0
	for i < len(r.fails) && r.fails[i] <= cut {
		i++
	}
	r.fails = append(r.fails[:0], r.fails[i:]...)
	r.fails = append(r.fails, ns)
	if len(r.fails) < g.cfg.RoomAuthFailures {
		return false, time.Time{}, 0
	}
	r.fails = r.fails[:0]
	if r.until != 0 && ns-r.until > int64(roomLockForget) {
		r.strikes = 0
	}
	r.strikes++
	d = g.cfg.RoomLockTime
	for i := 1; i < r.strikes && d < g.cfg.RoomLockMax; i++ {
		d *= 2
	}
	d = min(d, g.cfg.RoomLockMax)
	if r.until == 0 {
		l.locked.Add(1)
	}
	r.until = ns + int64(d)
	return true, time.Unix(0, r.until), d
}

// roomLockedUntil returns until when room's digest is locked (zero when it is not).
func (g *Guard) roomLockedUntil(room string, now int64) (int64, bool) {
	l := &g.roomLocks
	if l.locked.Load() == 0 {
		return 0, false
	}
	l.mu.Lock()
	r := l.m[room]
	var until int64
	if r != nil {
		until = r.until
	}
	l.mu.Unlock()
	return until, until > now
}

// RoomLocked reports whether a login for room from src must be refused without checking it:
// the room's digest is locked (RoomAuthFailures failures within RoomAuthWindow) and src is not
// one of the room's registered flows (a binding's source address and port; for a src with port
// 0, as TURN asks, its address). The refusal leaves a room-locked event and counts toward the
// source's brute-force limit like a failed login. Lock-free while no room was ever locked.
func (g *Guard) RoomLocked(room string, src netip.AddrPort, transport string) bool {
	nowT := g.cfg.Now()
	until, locked := g.roomLockedFor(room, src, nowT)
	if !locked {
		return false
	}
	r := &Request{Source: src, Transport: transport, FromUser: room, ToUser: room, MaxForwards: -1}
	g.refuse(r, room, ridRoomLocked, Reject, 403, fmt.Sprintf("room %s is locked until %s after too many failed logins; "+
		"only its registered flows may log in", clip(room), time.Unix(0, until).UTC().Format(time.RFC3339)), nowT)
	g.AuthFailed(src, room, transport)
	return true
}

// IsRoomLocked is RoomLocked without its event and count, for a caller that reports the
// refusal as a failed login itself (the TURN server's key lookup).
func (g *Guard) IsRoomLocked(room string, src netip.AddrPort) bool {
	_, locked := g.roomLockedFor(room, src, g.cfg.Now())
	return locked
}

// roomLockedFor returns until when room is locked for src, and whether it is.
func (g *Guard) roomLockedFor(room string, src netip.AddrPort, now time.Time) (int64, bool) {
	until, locked := g.roomLockedUntil(room, now.UnixNano())
	if !locked || g.isRoomFlow(room, src, now) || g.lists.Load().allow.MatchSource(src.Addr().Unmap().WithZone("")) {
		return 0, false
	}
	return until, true
}

// isRoomFlow reports whether src is the source of one of room's live bindings (port 0: its
// address is).
func (g *Guard) isRoomFlow(room string, src netip.AddrPort, now time.Time) bool {
	src = netip.AddrPortFrom(src.Addr().Unmap().WithZone(""), src.Port())
	for _, b := range g.store.State().Bindings(room, now) {
		ap, err := netip.ParseAddrPort(b.Source)
		if err != nil {
			continue
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
		if ap == src || (src.Port() == 0 && ap.Addr() == src.Addr()) {
			return true
		}
	}
	return false
}

// lockRoom records that room was locked (event, log).
func (g *Guard) lockRoom(r *Request, room string, until time.Time, d time.Duration, now time.Time) {
	why := fmt.Sprintf("%d failed logins for room %s within %s from any source; its digest is locked for %s "+
		"(until %s) except over its registered flows", g.cfg.RoomAuthFailures, clip(room), g.cfg.RoomAuthWindow,
		d, until.UTC().Format(time.RFC3339))
	g.refuse(r, room, ridRoomLocked, Reject, 403, why, now)
	g.log.Warn("guard locked a room's digest", "room", room, "until", until, "reason", why)
}

// pruneRoomLocks forgets rooms with no recent failure and no lock to remember.
func (g *Guard) pruneRoomLocks(now time.Time) {
	ns := now.UnixNano()
	l := &g.roomLocks
	l.mu.Lock()
	defer l.mu.Unlock()
	for room, r := range l.m {
		quiet := len(r.fails) == 0 || r.fails[len(r.fails)-1] <= ns-int64(g.cfg.RoomAuthWindow)
		if quiet && (r.until == 0 || ns-r.until > int64(roomLockForget)) {
			if r.until != 0 {
				l.locked.Add(-1)
			}
			delete(l.m, room)
		}
	}
}
