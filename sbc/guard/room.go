package guard

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// CallPolicy is what the B2BUA must do to an inbound call the guard allowed.
type CallPolicy struct {
	// StripAutoAnswer: remove auto-answer/intercom headers (IsAutoAnswer) before the room sees
	// the INVITE.
	StripAutoAnswer bool
	// Quiet: the caller is a stranger (Stranger) and the guard is in stealth mode, so a call the
	// B2BUA cannot place (the room is not registered) gets no answer either, like a name that is
	// no room: an answer would tell the stranger that the room exists.
	Quiet bool
}

// Stranger reports whether a caller is a stranger: not a registered room (Request.Registered:
// its flow, or a room that authenticated), not from an allow-listed source, not from one of the
// node's own addresses and not from a source Config.Trusted names (the other cluster nodes).
// In stealth mode a stranger learns nothing of a room it may not reach (CheckCall).
func (g *Guard) Stranger(r *Request) bool {
	if r.Registered {
		return false
	}
	src := r.Source.Addr().Unmap().WithZone("")
	if g.lists.Load().allow.MatchSource(src) || g.hosts.IsAddr(src) {
		return false
	}
	return g.cfg.Trusted == nil || !g.cfg.Trusted(r.Source)
}

// CheckCall applies a room's inbound policy to an INVITE that passed Check:
//
//   - dnd: refused with room.DNDCode (0: dropped), rule room-dnd;
//   - allowlist: only callers matching room.Allow (caller URI or domain, or source IP/CIDR;
//     see Matcher) pass, others get 403, rule room-allowlist;
//   - in stealth mode, a Stranger's dnd and allowlist refusals are dropped instead, so that a
//     room it may not call looks like a name that is no room (CallPolicy.Quiet says the same to
//     the B2BUA for a room that is not registered); other callers keep the codes above;
//   - open (or empty): everyone passes;
//   - an unknown mode refuses with 403, rule room-policy (fail closed);
//   - DenyDropIn: while the room is in a call, callers not on room.Allow get 486 Busy Here,
//     rule room-drop-in.
//
// CallPolicy.StripAutoAnswer is room.BlockAutoAnswer for callers that are not a registered
// room's flow. Note that the caller URI comes from From, which the caller chooses: an allow
// list of URIs keeps honest strangers out, an allow list of CIDRs keeps everyone out.
func (g *Guard) CheckCall(r *Request, room state.Room, roomInCall bool) (Verdict, CallPolicy) {
	quiet := g.cfg.Stealth && g.Stranger(r)
	pol := CallPolicy{StripAutoAnswer: room.BlockAutoAnswer && !r.Registered, Quiet: quiet}
	now := g.cfg.Now()
	listed := func() bool {
		m := g.rooms.matcher(g, room)
		return m.Match(r.Source.Addr(), r.FromUser, r.FromHost)
	}
	switch room.Inbound {
	case state.InboundOpen, "":
	case state.InboundDND:
		if room.DNDCode == 0 || quiet {
			return g.refuse(r, room.Name, ridRoomDND, Drop, 0, "room "+room.Name+" does not take calls", now), pol
		}
		code := room.DNDCode
		if code < 400 || code > 699 {
			code = 486
		}
		return g.refuse(r, room.Name, ridRoomDND, Reject, code, "room "+room.Name+" does not take calls", now), pol
	case state.InboundAllowlist:
		if !listed() {
			if quiet {
				return g.refuse(r, room.Name, ridRoomAllowlist, Drop, 0,
					"caller "+uri(r.FromUser, r.FromHost)+" is not on room "+room.Name+"'s allow list", now), pol
			}
			return g.refuse(r, room.Name, ridRoomAllowlist, Reject, 403,
				"caller "+uri(r.FromUser, r.FromHost)+" is not on room "+room.Name+"'s allow list", now), pol
		}
		return Verdict{}, pol // listed callers may also drop in
	default:
		return g.refuse(r, room.Name, ridRoomPolicy, Reject, 403,
			fmt.Sprintf("room %s has unknown inbound mode %q", room.Name, room.Inbound), now), pol
	}
	if room.DenyDropIn && roomInCall && !listed() {
		return g.refuse(r, room.Name, ridRoomDropIn, Reject, 486,
			"room "+room.Name+" is in a call and "+uri(r.FromUser, r.FromHost)+" may not drop in", now), pol
	}
	return Verdict{}, pol
}

// roomCache keeps each room's compiled allow list until the list changes.
type roomCache struct {
	mu sync.Mutex
	m  map[string]roomMatcher
}

type roomMatcher struct {
	allow   []string
	matcher *Matcher
	used    time.Time
}

// maxRoomCache bounds the cache; past it, the entries least recently used go.
const maxRoomCache = 4096

func (c *roomCache) matcher(g *Guard, room state.Room) *Matcher {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]roomMatcher{}
	}
	if e, ok := c.m[room.Name]; ok && slices.Equal(e.allow, room.Allow) {
		e.used = now
		c.m[room.Name] = e
		return e.matcher
	}
	m, err := CompilePatterns(room.Allow)
	if err != nil {
		g.log.Warn("guard: room allow list has bad entries; they are ignored", "room", room.Name, "error", err)
	}
	if len(c.m) >= maxRoomCache {
		oldest := ""
		var t time.Time
		for name, e := range c.m {
			if oldest == "" || e.used.Before(t) {
				oldest, t = name, e.used
			}
		}
		delete(c.m, oldest)
	}
	c.m[room.Name] = roomMatcher{allow: slices.Clone(room.Allow), matcher: m, used: now}
	return m
}
