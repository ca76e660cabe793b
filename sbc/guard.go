package sbc

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"

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

// guardRequest describes a request for the guard, once per request: the B2BUA gets the same one.
func (n *Node) guardRequest(req *sip.Request) *guard.Request {
	r := guard.RequestOf(req)
	r.Registered = n.registeredFlow(r.Source)
	return r
}

// admission is what the edge of signalling found out about a request outside a dialog before
// its handler sees it.
type admission struct {
	trunk string         // a call another node of the cluster hands over: the node that signed it
	req   *guard.Request // the request as the guard checked it; nil when it did not
}

// guarded puts the guard in front of a handler for requests outside a dialog: refused requests
// get the rule's answer, or none at all (stealth).
func (n *Node) guarded(h func(*sip.Request, sip.ServerTransaction)) func(*sip.Request, sip.ServerTransaction) {
	return n.admitted(func(req *sip.Request, tx sip.ServerTransaction, _ admission) { h(req, tx) })
}

// admitted is guarded for a handler that uses what the edge found out (handleInvite).
func (n *Node) admitted(h func(*sip.Request, sip.ServerTransaction, admission)) func(*sip.Request, sip.ServerTransaction) {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		if n.notReady(req, tx) {
			return // nothing is checked, nothing counts toward a ban
		}
		a, ok := n.admitRequest(req, tx)
		if !ok {
			return
		}
		if res, refused := checkRequest(req); refused {
			if res != nil { // an ACK is never answered
				n.respond(tx, res)
			}
			return
		}
		h(req, tx, a)
	}
}

// admitRequest verifies the trunk signature of a request outside a dialog (the one place it is
// verified) and puts every other one through the guard; false when the request was refused
// (answered, or dropped). Requests in a dialog, ACK and CANCEL pass as they are.
func (n *Node) admitRequest(req *sip.Request, tx sip.ServerTransaction) (admission, bool) {
	var a admission
	if to := req.To(); (to != nil && to.Params.Has("tag")) || req.IsAck() || req.IsCancel() {
		return a, true
	}
	// a call another node hands over was filtered by the node that received it
	if a.trunk = n.trunkSigner(req); a.trunk != "" || n.guard == nil {
		return a, true
	}
	a.req = n.guardRequest(req)
	v := n.guard.Check(a.req)
	switch v.Action {
	case guard.Drop:
		return a, false
	case guard.Reject:
		n.respond(tx, sip.NewResponseFromRequest(req, v.Code, b2bua.ReasonPhrase(v.Code), nil))
		return a, false
	}
	return a, true
}

// handleInvite hands an INVITE to the B2BUA through the entry point of its kind: a call another
// node handed over, a new call the guard checked, or a request in a dialog.
func (n *Node) handleInvite(req *sip.Request, tx sip.ServerTransaction, a admission) {
	switch {
	case a.trunk != "":
		n.calls.HandleTrunkCall(req, tx, a.trunk)
	case a.req != nil:
		n.calls.HandleNewCall(req, tx, a.req)
	default:
		n.calls.HandleInvite(req, tx)
	}
}

// trunkSigner returns the node of the cluster that signed a request it hands over (TrunkHeader,
// checked with the cluster's trunk key), or "" when the request carries no valid signature.
func (n *Node) trunkSigner(req *sip.Request) string {
	h := req.GetHeader(b2bua.TrunkHeader)
	if h == nil || req.CallID() == nil {
		return ""
	}
	now := time.Now()
	node, ok := b2bua.VerifyTrunk(n.store.State().TrunkKey(), h.Value(), string(*req.CallID()), req.Recipient.User, now)
	if !ok {
		return ""
	}
	if src, err := netip.ParseAddrPort(req.Source()); err == nil {
		n.peers.sawSigned(src.Addr(), now)
	}
	return node
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
