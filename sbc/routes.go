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
	n.srv.OnOptions(n.handleOptions)
	n.srv.OnRegister(func(req *sip.Request, tx sip.ServerTransaction) { n.reg.HandleRegister(req, tx) })
	n.srv.OnNoRoute(n.handleNoRoute)
	// Calls are not bridged by this node yet: an INVITE is refused without creating any state,
	// and in-dialog requests for dialogs we do not have get 481.
	n.srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		n.respond(tx, sip.NewResponseFromRequest(req, 480, "Temporarily Unavailable", nil))
	})
	for _, m := range []sip.RequestMethod{sip.BYE, sip.CANCEL, sip.UPDATE, sip.INFO, sip.PRACK} {
		n.srv.OnRequest(m, func(req *sip.Request, tx sip.ServerTransaction) {
			n.respond(tx, sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		})
	}
	n.srv.OnAck(func(*sip.Request, sip.ServerTransaction) {}) // an ACK is never answered
}

// handleOptions answers OPTIONS for the node or any user alike (an absent user must look like a
// present one: PEERS item 11).
func (n *Node) handleOptions(req *sip.Request, tx sip.ServerTransaction) {
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
