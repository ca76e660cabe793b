// Routing an INVITE that starts a call: who is calling (a room, a trunk, the world), where the
// call goes (the room's flows, other nodes, the world).

package b2bua

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/sbc/digest"
)

// newCall classifies a dialog-creating INVITE and starts the call.
func (e *Engine) newCall(req *sip.Request, tx sip.ServerTransaction) {
	from, to, cseq := req.From(), req.To(), req.CSeq()
	if from == nil || to == nil || cseq == nil || req.CallID() == nil || req.Contact() == nil {
		respond(tx, sip.NewResponseFromRequest(req, 400, "Bad Request", nil))
		return
	}
	if mf := req.MaxForwards(); mf != nil && *mf == 0 {
		respond(tx, sip.NewResponseFromRequest(req, 483, "Too Many Hops", nil))
		return
	}
	if name := unsafeNeeded(req); name != "" {
		// a line end in a header the other leg needs: it cannot be dropped, so the call is refused
		respond(tx, sip.NewResponseFromRequest(req, 400, "Bad "+name, nil))
		return
	}
	st := e.deps.Store.State()
	ruri := req.Recipient
	if h := req.GetHeader(TrunkHeader); h != nil {
		// another node of the cluster hands over a call for a room registered here: it has
		// already filtered the caller
		if _, ok := VerifyTrunk(st.TrunkKey(), h.Value(), string(*req.CallID()), ruri.User, time.Now()); ok {
			e.inbound(req, tx, ruri.User, "", true)
			return
		}
		respond(tx, sip.NewResponseFromRequest(req, 403, "Forbidden", nil))
		return
	}
	if fromLocal := e.cfg.Local(from.Address.Host); fromLocal && !namesItself(req) {
		// Someone claims to be one of our rooms (in our domain, or at one of our addresses): it
		// must prove it. Every name gets the same 407, whether or not that room exists, so the
		// answer tells a scanner nothing; then the call goes to another room or out.
		caller, ok := e.authenticate(req, tx)
		if !ok {
			return
		}
		if e.cfg.Local(ruri.Host) {
			e.inbound(req, tx, ruri.User, caller, false)
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
	e.inbound(req, tx, ruri.User, "", false)
}

// namesItself reports whether the From host is the address the request came from: a UA without
// a domain naming itself (on the node's own host, that address is one of ours), not a claim to
// be one of our rooms.
func namesItself(req *sip.Request) bool {
	if !isIP(req.From().Address.Host) {
		return false
	}
	host, err := netip.ParseAddr(strings.Trim(req.From().Address.Host, "[]"))
	return err == nil && host.Unmap() == sourceAddr(req).Addr()
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
// node (fromTrunk) goes to this node's flows only and is not filtered again.
func (e *Engine) inbound(req *sip.Request, tx sip.ServerTransaction, roomName, caller string, fromTrunk bool) {
	room, ok := e.deps.Store.State().Room(roomName)
	if !ok || roomName == "" {
		respond(tx, sip.NewResponseFromRequest(req, 404, "Not Found", nil))
		return
	}
	dec := Decision{Action: Allow}
	if e.deps.Decider != nil && !fromTrunk {
		dec = e.deps.Decider.DecideCall(req, room, e.roomBusy(roomName), caller)
	}
	switch dec.Action {
	case Drop:
		return // nothing was created; the transaction times out on its own
	case Reject:
		code := dec.Code
		if code < 300 || code > 699 {
			code = 403
		}
		respond(tx, sip.NewResponseFromRequest(req, code, ReasonPhrase(code), nil))
		return
	}
	targets, down := e.targets(roomName, fromTrunk)
	if len(targets) == 0 && fromTrunk {
		targets, down = e.movedTargets(req, roomName) // flownode.go
	}
	if len(targets) == 0 {
		if dec.Quiet {
			e.log.Debug("call to an unregistered room dropped (stealth)", "room", roomName, "source", req.Source())
			return
		}
		respond(tx, unavailable(req, down > 0))
		return
	}
	c := e.prepare(req, tx, state.Inbound, roomName, caller, fromTrunk)
	if c == nil {
		return
	}
	c.strip = dec.StripAutoAnswer
	// Leg B shows the callee the caller's identity, never the caller's equipment.
	from := req.From()
	c.b.local = sip.Uri{Scheme: "sip", User: from.Address.User, Host: from.Address.Host}
	if isIP(from.Address.Host) || caller != "" {
		c.b.local.Host = e.cfg.Domain
	}
	c.b.localName = displayName(from.DisplayName)
	c.b.remote = sip.Uri{Scheme: "sip", User: roomName, Host: e.cfg.Domain}
	c.setup(targets, nil) // the handler must not return before the final answer: sipgo ends the transaction then
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
			peer, _ := netip.ParseAddrPort(b.Source)
			t = target{uri: u, dest: b.Source, transport: strings.ToUpper(b.Transport), peer: peer}
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
	c := e.prepare(req, tx, state.Outbound, caller, caller, false)
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
