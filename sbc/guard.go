package sbc

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/siphost"
	"github.com/portcullis-sbc/portcullis/media/peerfilter"
	"github.com/portcullis-sbc/portcullis/sbc/b2bua"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

// startGuard builds the caller filter from the config and the cluster's lists and bans.
func (n *Node) startGuard() error {
	g := n.cfg.Guard
	gc := guard.Config{
		Domain: n.cfg.SIP.Domain, NodeAddrs: n.own, NodeID: n.cfg.Node.ID, AllowIPDialing: g.IPDialingOn(),
		Allow: g.Allow, Deny: g.Deny, ScannerUserAgents: g.ScannerUserAgents,
		BanTime: g.BanTime.D(), BanMax: g.BanMax.D(), RequestRate: g.RequestRate, RequestBurst: g.RequestBurst,
		AuthFailures: g.AuthFailures, AuthWindow: g.AuthWindow.D(),
		RoomAuthFailures: g.RoomAuthFailures, RoomAuthWindow: g.RoomAuthWindow.D(), RoomLockTime: g.RoomLockTime.D(), RoomLockMax: g.RoomLockMax.D(),
		UnknownUsers: g.UnknownUsers, UnknownWindow: g.UnknownWindow.D(),
		DatagramRate: g.DatagramRate, DatagramBurst: g.DatagramBurst, Trusted: n.clusterPeer,
		Stealth: g.StealthOn(), Events: g.Events, Logger: n.log.With("component", "guard"),
		OnFeedsChanged: n.kickBlocklist, OnBan: n.banLocally,
	}
	if n.cfg.SIP.Advertise != "" && !siphost.IsIP(n.cfg.SIP.Advertise) {
		gc.Aliases = append(gc.Aliases, n.cfg.SIP.Advertise)
	}
	for _, f := range g.Feeds {
		gc.Feeds = append(gc.Feeds, guard.Feed{URL: f.URL, Interval: f.Interval.D()})
	}
	gd, err := guard.New(gc, n.store)
	if err != nil {
		return fmt.Errorf("guard: %w", err)
	}
	n.guard = gd
	n.turnGate.g.Store(gd)
	n.decider = callDecider{g: gd, registered: n.registeredFlow}
	return nil
}

// nodeAddrs are the node's own addresses (the advertised one, the listeners', and the host's
// interfaces when a listener is on the wildcard address, scanned once): an INVITE to one of them
// instead of to a room is a ghost call. Start gathers them once into n.own.
func (n *Node) nodeAddrs() []netip.Addr {
	var out []netip.Addr
	add := func(a netip.Addr) {
		a = a.Unmap()
		for _, b := range out {
			if a == b {
				return
			}
		}
		out = append(out, a)
	}
	if a, err := netip.ParseAddr(n.cfg.SIP.Advertise); err == nil {
		add(a)
	}
	var ifaces []netip.Addr
	for _, l := range n.cfg.SIP.Listen {
		if !l.Addr.Addr().IsUnspecified() {
			add(l.Addr.Addr())
			continue
		}
		if ifaces == nil {
			ifaces = peerfilter.InterfaceAddrs()
		}
		for _, a := range ifaces {
			add(a)
		}
	}
	return out
}

// registeredFlow reports whether src is the signalling flow of a registered room (its requests
// skip the scan checks). The replicated state keeps that index with the bindings.
func (n *Node) registeredFlow(src netip.AddrPort) bool {
	return n.store.State().RegisteredFlow(src)
}

// clusterPeer reports whether src is another node of the cluster: the guard's meter never drops
// it (the guard itself knows the other trusted sources: allow-listed, ours, sites).
func (n *Node) clusterPeer(src netip.AddrPort) bool {
	return n.peers.has(src.Addr())
}

// meterDatagram applies the guard's per-source datagram rate before a datagram is parsed.
// The guard starts after the sockets are bound but before they are served.
func (n *Node) meterDatagram(src netip.AddrPort) bool {
	return n.guard == nil || n.guard.Datagram(src)
}

// notSIP tells the guard about a datagram the edge dropped as not SIP (events, flood bans).
// The guard starts after the sockets are bound but before they are served.
func (n *Node) notSIP(src netip.AddrPort, head []byte) {
	if n.guard == nil {
		return
	}
	n.guard.NotSIP(&guard.Request{Source: src, Transport: "UDP", Registered: n.registeredFlow(src)}, head)
}

// guardRequest describes a request for the guard.
func (n *Node) guardRequest(req *sip.Request) *guard.Request {
	r := guardRequestOf(req)
	r.Registered = n.registeredFlow(r.Source)
	return r
}

// guarded puts the guard in front of a handler for requests outside a dialog: refused requests
// get the rule's answer, or none at all (stealth).
func (n *Node) guarded(h func(*sip.Request, sip.ServerTransaction)) func(*sip.Request, sip.ServerTransaction) {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		if n.notReady(req, tx) {
			return // nothing is checked, nothing counts toward a ban
		}
		if to := req.To(); n.guard != nil && (to == nil || !to.Params.Has("tag")) && !req.IsAck() && !req.IsCancel() && !n.fromTrunk(req) {
			v := n.guard.Check(n.guardRequest(req))
			switch v.Action {
			case guard.Drop:
				return
			case guard.Reject:
				n.respond(tx, sip.NewResponseFromRequest(req, v.Code, b2bua.ReasonPhrase(v.Code), nil))
				return
			}
		}
		if res, refused := checkRequest(req); refused {
			if res != nil { // an ACK is never answered
				n.respond(tx, res)
			}
			return
		}
		h(req, tx)
	}
}

// fromTrunk reports whether a request is a call handed over by another node of the cluster
// (signed with the cluster's trunk key): the node that received it has filtered it already.
func (n *Node) fromTrunk(req *sip.Request) bool {
	h := req.GetHeader(b2bua.TrunkHeader)
	if h == nil || req.CallID() == nil {
		return false
	}
	now := time.Now()
	_, ok := b2bua.VerifyTrunk(n.store.State().TrunkKey(), h.Value(), string(*req.CallID()), req.Recipient.User, now)
	if ok {
		if src, err := netip.ParseAddrPort(req.Source()); err == nil {
			n.peers.sawSigned(src.Addr(), now)
		}
	}
	return ok
}

// callDecider adapts the guard to the B2BUA's caller-identity seam (per-room policy).
type callDecider struct {
	g          *guard.Guard
	registered func(src netip.AddrPort) bool // a registered room's flow
}

func (d callDecider) DecideCall(req *sip.Request, room state.Room, roomInCall bool, caller string) b2bua.Decision {
	r := guardRequestOf(req)
	// an authenticated room calling another room, or a request on a registered room's flow
	r.Registered = caller != "" || d.registered != nil && d.registered(r.Source)
	v, p := d.g.CheckCall(r, room, roomInCall)
	out := b2bua.Decision{Code: v.Code, Rule: v.Rule, Reason: v.Reason, StripAutoAnswer: p.StripAutoAnswer, Quiet: p.Quiet}
	switch v.Action {
	case guard.Reject:
		out.Action = b2bua.Reject
	case guard.Drop:
		out.Action = b2bua.Drop
	}
	return out
}

// guardRequestOf describes a request for the guard, without knowing whether its source is a
// registered flow (guardRequest adds that).
func guardRequestOf(req *sip.Request) *guard.Request {
	src, _ := netip.ParseAddrPort(req.Source())
	r := &guard.Request{Source: src, Transport: req.Transport(), Method: string(req.Method),
		RURIUser: req.Recipient.User, RURIHost: req.Recipient.Host, MaxForwards: -1}
	if f := req.From(); f != nil {
		r.FromName, r.FromUser, r.FromHost = f.DisplayName, f.Address.User, f.Address.Host
	}
	if t := req.To(); t != nil {
		r.ToUser, r.ToHost = t.Address.User, t.Address.Host
	}
	if h := req.GetHeader("User-Agent"); h != nil {
		r.UserAgent = h.Value()
	}
	if c := req.CallID(); c != nil {
		r.CallID = string(*c)
	}
	if mf := req.MaxForwards(); mf != nil {
		r.MaxForwards = int(*mf)
	}
	return r
}

// runGuard runs the guard's feeds and housekeeping until ctx ends.
func (n *Node) runGuard(ctx context.Context) {
	if n.guard == nil {
		return
	}
	n.goBackground(func() { _ = n.guard.Run(ctx) })
}

// Guard is the node's caller filter (events, counts) for the admin API.
func (n *Node) Guard() *guard.Guard { return n.guard }
