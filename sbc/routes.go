package sbc

import (
	"github.com/emiago/sipgo/sip"
)

// allowed lists the methods the node serves, for Allow headers.
const allowed = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, PRACK"

// known methods that we deliberately do not serve: 405 with Allow. Anything else is 501.
var notAllowed = map[sip.RequestMethod]bool{
	sip.SUBSCRIBE: true, sip.NOTIFY: true, sip.REFER: true, sip.MESSAGE: true, sip.PUBLISH: true,
}

func (n *Node) routes() {
	// Every request outside a dialog passes the guard first (guarded).
	n.srv.OnOptions(n.guarded(n.handleOptions))
	n.srv.OnRegister(n.guarded(func(req *sip.Request, tx sip.ServerTransaction) { n.reg.HandleRegister(req, tx) }))
	n.srv.OnNoRoute(n.guarded(n.handleNoRoute))
	// Calls: new INVITEs and everything inside a dialog go to the B2BUA; requests for dialogs
	// it does not have get 481, an ACK is never answered.
	n.srv.OnInvite(n.admitted(n.handleInvite))
	for _, m := range []sip.RequestMethod{sip.BYE, sip.CANCEL, sip.UPDATE, sip.INFO, sip.PRACK, sip.ACK} {
		n.srv.OnRequest(m, n.guarded(func(req *sip.Request, tx sip.ServerTransaction) { n.calls.HandleInDialog(req, tx) }))
	}
}

// handleOptions answers OPTIONS for the node or any user alike (an absent user must look like a
// present one: PEERS item 11).
func (n *Node) handleOptions(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		n.calls.HandleInDialog(req, tx)
		return
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(sip.NewHeader("Allow", allowed))
	res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	res.AppendHeader(sip.NewHeader("Supported", "timer, path, outbound"))
	n.respond(tx, res)
}

func (n *Node) handleNoRoute(req *sip.Request, tx sip.ServerTransaction) {
	if req.IsAck() {
		return
	}
	var res *sip.Response
	if notAllowed[req.Method] {
		res = sip.NewResponseFromRequest(req, 405, "Method Not Allowed", nil)
		res.AppendHeader(sip.NewHeader("Allow", allowed))
	} else {
		res = sip.NewResponseFromRequest(req, 501, "Not Implemented", nil)
	}
	n.respond(tx, res)
}

func (n *Node) respond(tx sip.ServerTransaction, res *sip.Response) {
	if err := tx.Respond(res); err != nil {
		n.log.Debug("respond failed", "status", res.StatusCode, "error", err)
	}
}
