// The answer: leg A's final response, the ACKs of both legs, and a leg hung up when the answer
// cannot be used.

package b2bua

import (
	"context"
	"net/netip"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/media"
)

// responseA builds a response to the caller's INVITE on leg A: our tag, our Contact.
func (c *call) responseA(code int, reason string, body []byte) *sip.Response {
	res := sip.NewResponseFromRequest(c.ainv, code, reason, body)
	if to := res.To(); to != nil && code > 100 {
		to.Params.Add("tag", c.a.localTag)
	}
	if code > 100 && code < 300 {
		res.AppendHeader(&sip.ContactHeader{Address: c.e.contactFor(c.transport, c.a.peer)})
	}
	if c.e.cfg.UserAgent != "" && !c.e.cfg.PassUserAgent {
		res.AppendHeader(sip.NewHeader("Server", c.e.cfg.UserAgent))
	}
	if len(body) > 0 {
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	return res
}

// failA ends a call that was never answered with a final status to the caller.
func (c *call) failA(code int, reason string) {
	res := c.responseA(code, ReasonPhrase(code), nil)
	if code == 503 {
		res.AppendHeader(sip.NewHeader("Retry-After", "30"))
	}
	respond(c.atx, res)
	c.finish(code, reason)
}

// answer completes the call with the winning branch's 2xx: ACK on leg B, 200 on leg A.
func (c *call) answer(b *branch, res *sip.Response) bool {
	e := c.e
	c.adoptLegB(b, res)
	bodyA, err := c.answerBody(b, res)
	if err != nil {
		e.log.Info("callee SDP refused", "call", c.id, "error", err)
		c.ack(b, res, nil)
		c.byeLeg(c.b)
		c.failA(488, "callee SDP refused: "+err.Error())
		return false
	}
	if !c.offerless {
		c.ack(b, res, nil)
	}
	out := c.okA(res, bodyA)
	c.a.setSDP(bodyA)
	if !c.markAnswered(b, res) {
		c.ack(b, res, nil)
		c.byeLeg(c.b)
		return false
	}
	if !c.fromTrunk {
		e.deps.Store.Enqueue(state.PutCall(c.snapshot()))
	}
	ackCh := c.expectAck(c.a, c.ainv.CSeq().SeqNo)
	c.addFarLeg(out)
	respond(c.atx, out)
	go c.awaitAck(c.a, out, func() { respond(c.atx, out) }, ackCh, func(ack *sip.Request) {
		if c.offerless {
			body := c.ackAnswer(media.LegA, ack, c.source)
			c.b.setSDP(body)
			c.ack(b, res, body)
		}
	})
	c.armTimers()
	e.log.Debug("call answered", "call", c.id, "room", c.room, "direction", c.dir)
	return true
}

// ackAnswer is the answer an ACK from side carries (to an offerless INVITE) as the other leg
// gets it, through the media relay; nil when it carries none or the relay refuses it.
func (c *call) ackAnswer(side media.Leg, ack *sip.Request, peer netip.AddrPort) []byte {
	if !hasSDP(ack) {
		return nil
	}
	if c.media == nil {
		return ack.Body()
	}
	body, err := c.media.Answer(side, ack.Body(), peer)
	if err != nil {
		return nil
	}
	return body
}

// adoptLegB makes the winning branch's dialog leg B's: the callee's tag, target, route set and
// flow.
func (c *call) adoptLegB(b *branch, res *sip.Response) {
	tag, _ := res.To().Params.Get("tag")
	c.b.mu.Lock()
	c.b.remoteTag = tag
	if ct := res.Contact(); ct != nil {
		c.b.target = ct.Address
	} else {
		c.b.target = b.req.Recipient
	}
	c.b.routes = routeSetFrom(res, true)
	c.b.dest = b.t.dest
	c.b.transport = b.t.transport
	c.b.peer = b.t.peer
	c.b.update = allowsUpdate(res)
	c.b.mu.Unlock()
	c.b.setSDP(c.bOffer)
	_ = c.b.setRemoteSDP(res.Body())
}

// answerBody is the callee's SDP as the caller gets it: through the media relay, as the
// answer to the caller's offer or, for an offerless INVITE, as the offer. Nil without SDP.
func (c *call) answerBody(b *branch, res *sip.Response) ([]byte, error) {
	if !hasSDP(res) {
		return nil, nil
	}
	if c.media == nil {
		return res.Body(), nil
	}
	if c.offerless {
		return c.media.Offer(media.LegB, res.Body(), b.t.peer)
	}
	return c.media.Answer(media.LegB, res.Body(), b.t.peer)
}

// okA is leg A's 200 to the caller's INVITE, with bodyA and our session timer.
func (c *call) okA(res *sip.Response, bodyA []byte) *sip.Response {
	e := c.e
	out := c.responseA(200, "OK", bodyA)
	copyHeaders(res, out, false, e.cfg.PassUserAgent)
	if bodyA == nil {
		out.RemoveHeader("Content-Type")
	}
	out.AppendHeader(sip.NewHeader("Allow", allowMethods))
	if e.cfg.SessionExpires > 0 && c.aTimer {
		out.AppendHeader(sip.NewHeader("Supported", "timer"))
		out.AppendHeader(sip.NewHeader("Require", "timer"))
		out.AppendHeader(sip.NewHeader("Session-Expires", strconv.Itoa(int(e.cfg.SessionExpires/time.Second))+";refresher=uas"))
	}
	return out
}

// markAnswered moves the call to answered over branch b's 2xx res; false when it ended
// meanwhile.
func (c *call) markAnswered(b *branch, res *sip.Response) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return false
	}
	c.st = state.CallAnswered
	c.answered = time.Now().UTC()
	c.status = 200
	c.bNode = b.t.node
	if b.t.trunk {
		c.far = farLeg(res) // the room's leg on that node (adopt_far.go)
	}
	return true
}

// ack sends the ACK for a 2xx of leg B's INVITE (re-sent when the 2xx is retransmitted).
func (c *call) ack(b *branch, res *sip.Response, body []byte) {
	tag, _ := res.To().Params.Get("tag")
	d := &dialog{callID: c.b.callID, localTag: c.b.localTag, remoteTag: tag, local: c.b.local, localName: c.b.localName,
		remote: c.b.remote, target: b.req.Recipient, routes: routeSetFrom(res, true), dest: b.t.dest, transport: b.t.transport}
	if ct := res.Contact(); ct != nil {
		d.target = ct.Address
	}
	ack := d.newRequest(sip.ACK, res.CSeq().SeqNo, sip.ContactHeader{})
	if len(body) > 0 {
		ack.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		ack.SetBody(body)
	}
	// The hook lives as long as leg B's transaction (32 s after the 2xx, RFC 6026 Timer M): it
	// holds the client and the ACK only, not the call.
	client := c.e.deps.Client
	send := func() { _ = client.WriteRequest(ack) }
	send()
	if b.tx != nil {
		b.tx.OnRetransmission(func(*sip.Response) { send() })
	}
}

// ackAndBye releases an answer nobody wants: ACK, then BYE.
func (c *call) ackAndBye(b *branch, res *sip.Response) {
	c.ack(b, res, nil)
	tag, _ := res.To().Params.Get("tag")
	d := &dialog{callID: c.b.callID, localTag: c.b.localTag, remoteTag: tag, local: c.b.local, localName: c.b.localName,
		remote: c.b.remote, target: b.req.Recipient, routes: routeSetFrom(res, true), dest: b.t.dest, transport: b.t.transport, cseq: 1}
	if ct := res.Contact(); ct != nil {
		d.target = ct.Address
	}
	c.byeLeg(d)
}

// byeLeg sends BYE on a leg and waits (in the background) for its answer.
func (c *call) byeLeg(d *dialog) {
	req := d.newRequest(sip.BYE, 0, sip.ContactHeader{})
	c.e.busy.add()
	go func() {
		defer c.e.busy.done()
		ctx, done := context.WithTimeout(context.Background(), 8*time.Second)
		defer done()
		_, _ = c.e.deps.Client.Do(ctx, req)
	}()
}

// expectAck registers interest in the ACK for a 2xx we send with that CSeq on leg d.
func (c *call) expectAck(d *dialog, cseq uint32) chan *sip.Request {
	ch := make(chan *sip.Request, 1)
	c.mu.Lock()
	c.acks[ackKey{d.side, cseq}] = ch
	c.mu.Unlock()
	return ch
}

// awaitAck retransmits a 2xx over UDP until its ACK arrives (RFC 3261 13.3.1.4), then runs
// then(ack). Without an ACK in 64*T1 the call is ended. It stops when the call ends first: a
// BYE can overtake the ACK (each message is handled in its own goroutine), and a 2xx of an
// ended dialog is not retransmitted.
func (c *call) awaitAck(d *dialog, res *sip.Response, resend func(), ch chan *sip.Request, then func(*sip.Request)) {
	wait := sip.T1
	deadline := time.NewTimer(64 * sip.T1)
	defer deadline.Stop()
	d.mu.Lock() // an adopted trunk leg may become the caller's dialog (adopt_trunk.go)
	reliable := sip.IsReliable(d.transport)
	d.mu.Unlock()
	tick := time.NewTimer(wait)
	defer tick.Stop()
	for {
		select {
		case ack := <-ch:
			then(ack)
			return
		case <-c.endedCh:
			c.mu.Lock()
			delete(c.acks, ackKey{d.side, res.CSeq().SeqNo})
			c.mu.Unlock()
			return
		case <-deadline.C:
			c.mu.Lock()
			delete(c.acks, ackKey{d.side, res.CSeq().SeqNo})
			c.mu.Unlock()
			c.hangup("no ACK from "+legName(d.side), 0)
			return
		case <-tick.C:
			if !reliable {
				resend()
			}
			wait = min(2*wait, sip.T2)
			tick.Reset(wait)
		}
	}
}
