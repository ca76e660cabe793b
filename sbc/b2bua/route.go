// Routing an INVITE that starts a call: who is calling (a room, a trunk, the world), where the
// call goes (the room's flows, other nodes, the world).

package b2bua

import (
	"net/netip"
	"slices"

	"github.com/emiago/sipgo/sip"
	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/siphost"
	"github.com/portcullis-sbc/portcullis/sbc/digest"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
	"github.com/portcullis-sbc/portcullis/sbc/registrar"
)

// origin is who calls, as the edge of signalling and the classification found out.
type origin struct {
	trunk  string         // the node that handed the call over (HandleTrunkCall); "" otherwise
	guard  *guard.Request // the request as the guard saw it; nil: described when needed
	caller string         // the room that authenticated to dial ("" for outsiders and trunk calls)
}

// newCall classifies a dialog-creating INVITE and starts the call.
func (e *Engine) newCall(req *sip.Request, tx sip.ServerTransaction, o origin) {
	if !e.wellFormed(req, tx) {
		return
	}
	ruri := req.Recipient
	if o.trunk != "" {
		e.inbound(req, tx, ruri.User, o)
		return
	}
	if req.GetHeader(TrunkHeader) != nil {
		// a trunk signature the edge did not verify (forged, stale, or signed with another key)
		respond(tx, sip.NewResponseFromRequest(req, 403, "Forbidden", nil))
		return
	}
	if fromLocal := e.cfg.Local(req.From().Address.Host); fromLocal && !namesItself(req) {
		// Someone claims to be one of our rooms (in our domain, or at one of our addresses): it
		// must prove it. Every name gets the same 407, whether or not that room exists, so the
		// answer tells a scanner nothing; then the call goes to another room or out.
		caller, ok := e.authenticate(req, tx)
		if !ok {
			return
		}
		o.caller = caller
		if e.cfg.Local(ruri.Host) {
			e.inbound(req, tx, ruri.User, o)
			return
		}
		e.outbound(req, tx, caller)
		return
	}
	if !e.cfg.Local(ruri.Host) {
		// Nobody from outside may use the node to reach a third party.
		respond(tx, sip.NewResponseFromRequest(req, 403, "Relaying Denied", nil))
		return
	}
	e.inbound(req, tx, ruri.User, o)
}

// wellFormed answers an INVITE the other leg cannot be made of (400), or one that has used up
// its hops (483: the B2BUA forwards it, so a loop ends here), and reports whether it is neither.
func (e *Engine) wellFormed(req *sip.Request, tx sip.ServerTransaction) bool {
	if req.From() == nil || req.To() == nil || req.CSeq() == nil || req.CallID() == nil || req.Contact() == nil {
		respond(tx, sip.NewResponseFromRequest(req, 400, "Bad Request", nil))
		return false
	}
	if mf := req.MaxForwards(); mf != nil && *mf == 0 {
		respond(tx, sip.NewResponseFromRequest(req, 483, "Too Many Hops", nil))
		return false
	}
	if name := unsafeNeeded(req); name != "" {
		// a line end in a header the other leg needs: it cannot be dropped, so the call is refused
		respond(tx, sip.NewResponseFromRequest(req, 400, "Bad "+name, nil))
		return false
	}
	return true
}

// namesItself reports whether the From host is the address the request came from: a UA without
// a domain naming itself (on the node's own host, that address is one of ours), not a claim to
// be one of our rooms.
func namesItself(req *sip.Request) bool {
	host, ok := siphost.IP(req.From().Address.Host)
	return ok && host == sourceAddr(req).Addr()
}

// authenticate challenges a room that dials (407) and verifies its answer.
func (e *Engine) authenticate(req *sip.Request, tx sip.ServerTransaction) (string, bool) {
	if e.deps.Auth == nil {
		respond(tx, sip.NewResponseFromRequest(req, 403, "Forbidden", nil))
		return "", false
	}
	src := sourceAddr(req)
	if l, ok := e.deps.Observer.(RoomLocker); ok && headerValue(req, "Proxy-Authorization") != "" &&
		req.From() != nil && l.RoomLocked(req.From().Address.User, src, req.Transport()) {
		respond(tx, sip.NewResponseFromRequest(req, 403, "Forbidden", nil))
		return "", false
	}
	user, res := e.deps.Auth.Verify(string(req.Method), req.Recipient.String(), headerValue(req, "Proxy-Authorization"),
		func(u string) (string, string, bool) {
			r, ok := e.deps.Store.State().Room(u)
			return r.HA1MD5, r.HA1SHA256, ok
		})
	switch res {
	case digest.OK:
		if user != req.From().Address.User {
			break
		}
		if e.deps.Observer != nil {
			e.deps.Observer.AuthSucceeded(src, user)
		}
		return user, true
	case digest.Missing, digest.Stale:
		r := sip.NewResponseFromRequest(req, 407, "Proxy Authentication Required", nil)
		for _, ch := range e.deps.Auth.Challenge(res == digest.Stale) {
			r.AppendHeader(sip.NewHeader("Proxy-Authenticate", ch))
		}
		respond(tx, r)
		return "", false
	}
	if e.deps.Observer != nil {
		e.deps.Observer.AuthFailed(src, user, req.Transport())
	}
	respond(tx, sip.NewResponseFromRequest(req, 403, "Forbidden", nil))
	return "", false
}

// target is where one branch of leg B goes.
type target struct {
	uri       sip.Uri
	dest      string // ip:port
	transport string
	peer      netip.AddrPort
	trunk     bool   // another node, which holds the room's flow
	node      string // that node (trunk)
	relay     bool   // a call handed here for a room that moved on, handed on once (flownode.go)
	// alt are the other flows of the same UA instance (RFC 5626 +sip.instance), tried in
	// order when this one fails with a transport error or says nothing within TargetTimeout:
	// one INVITE per instance, never one per flow (RFC 5626 section 5.3).
	alt []target
}

// inbound sends a call to every binding of a room: directly over the flows this node holds, and
// over the internal trunk to the other nodes that hold the rest. A call handed over by another
// node (o.trunk) goes to this node's flows only and is not filtered again.
func (e *Engine) inbound(req *sip.Request, tx sip.ServerTransaction, roomName string, o origin) {
	room, ok := e.deps.Store.State().Room(roomName)
	if !ok || roomName == "" {
		respond(tx, sip.NewResponseFromRequest(req, 404, "Not Found", nil))
		return
	}
	pol, ok := e.decide(req, tx, room, o)
	if !ok {
		return
	}
	targets, down := e.targets(roomName, o.trunk != "")
	if len(targets) == 0 && o.trunk != "" {
		targets, down = e.movedTargets(req, roomName) // flownode.go
	}
	if len(targets) == 0 {
		if pol.Quiet {
			e.log.Debug("call to an unregistered room dropped (stealth)", "room", roomName, "source", req.Source())
			return
		}
		respond(tx, unavailable(req, down > 0))
		return
	}
	c := e.prepare(req, tx, state.Inbound, roomName, o.trunk)
	if c == nil {
		return
	}
	c.strip = pol.StripAutoAnswer
	// Leg B shows the callee the caller's identity, never the caller's equipment.
	from := req.From()
	c.b.local = sip.Uri{Scheme: "sip", User: from.Address.User, Host: from.Address.Host}
	if siphost.IsIP(from.Address.Host) || o.caller != "" {
		c.b.local.Host = e.cfg.Domain
	}
	c.b.localName = displayName(from.DisplayName)
	c.b.remote = sip.Uri{Scheme: "sip", User: roomName, Host: e.cfg.Domain}
	c.setup(targets, nil) // the handler must not return before the final answer: sipgo ends the transaction then
}

// decide asks the Decider about a call to room (trunk calls were decided by the node that
// handed them over) and answers a refused one; it returns the policy of an allowed call.
func (e *Engine) decide(req *sip.Request, tx sip.ServerTransaction, room state.Room, o origin) (guard.CallPolicy, bool) {
	if e.deps.Decider == nil || o.trunk != "" {
		return guard.CallPolicy{}, true
	}
	r := o.guard
	if r == nil {
		r = guard.RequestOf(req)
	}
	if o.caller != "" && !r.Registered {
		cp := *r
		cp.Registered = true // an authenticated room calling another room
		r = &cp
	}
	v, pol := e.deps.Decider.CheckCall(r, room, e.roomBusy(room.Name))
	switch v.Action {
	case guard.Drop:
		return pol, false // nothing was created; the transaction times out on its own
	case guard.Reject:
		code := v.Code
		if code < 300 || code > 699 {
			code = 403
		}
		respond(tx, sip.NewResponseFromRequest(req, code, ReasonPhrase(code), nil))
		return pol, false
	}
	return pol, true
}

// targets are the branches of an inbound call: one per binding held here, one per other node
// holding bindings (over the trunk), and one per UA instance that registered several RFC 5626
// flows, whose other flows are its alternates: this node's flows first, the newest first, then
// the other nodes'. Flows on members that are down are skipped and counted in down.
func (e *Engine) targets(roomName string, fromTrunk bool) (targets []target, down int) {
	bs := slices.Clone(e.cfg.Bindings(roomName))
	local := func(b state.Binding) bool { return b.Node == "" || b.Node == e.cfg.NodeID }
	slices.SortStableFunc(bs, func(a, b state.Binding) int {
		if la, lb := local(a), local(b); la != lb {
			if la {
				return -1
			}
			return 1
		}
		return b.Updated.Compare(a.Updated)
	})
	viaNode := map[string]bool{}
	instance := map[string]int{} // instance -> its target's index
	for _, b := range bs {
		var t target
		if !local(b) {
			if fromTrunk || b.Local == "" {
				continue
			}
			if e.flowNodeDown(b.Node) {
				down++
				continue
			}
			t = target{uri: sip.Uri{Scheme: "sip", User: roomName, Host: e.cfg.Domain},
				dest: b.Local, transport: "UDP", trunk: true, node: b.Node}
		} else {
			var u sip.Uri
			if err := sip.ParseUri(b.Contact, &u); err != nil {
				continue
			}
			dest, transport := registrar.Route(b) // back over the flow the room registered on
			peer, _ := netip.ParseAddrPort(dest)
			t = target{uri: u, dest: dest, transport: transport, peer: peer}
		}
		if b.Instance != "" {
			if i, ok := instance[b.Instance]; ok {
				if !t.trunk || !slices.ContainsFunc(targets[i].alt, func(a target) bool { return a.node == t.node }) {
					targets[i].alt = append(targets[i].alt, t)
				}
				continue
			}
			instance[b.Instance] = len(targets)
		}
		if t.trunk {
			if viaNode[t.node] {
				continue
			}
			viaNode[t.node] = true
		}
		targets = append(targets, t)
	}
	return targets, down
}

// outbound sends a room's call to the world.
func (e *Engine) outbound(req *sip.Request, tx sip.ServerTransaction, caller string) {
	if e.deps.Resolver == nil {
		respond(tx, sip.NewResponseFromRequest(req, 403, "Outbound Calls Disabled", nil))
		return
	}
	c := e.prepare(req, tx, state.Outbound, caller, "")
	if c == nil {
		return
	}
	from := req.From()
	c.b.local = sip.Uri{Scheme: "sip", User: caller, Host: e.cfg.Domain}
	c.b.localName = displayName(from.DisplayName)
	ruri := req.Recipient
	c.b.remote = sip.Uri{Scheme: ruri.Scheme, User: ruri.User, Host: ruri.Host, Port: ruri.Port}
	c.setup(nil, &ruri)
}
