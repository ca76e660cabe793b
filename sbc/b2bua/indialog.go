package b2bua

import (
	"context"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"
)

// other returns the leg opposite d.
func (c *call) other(d *dialog) *dialog {
	if d == c.a {
		return c.b
	}
	return c.a
}

// inDialog serves a request the peer of leg d sent inside its dialog.
func (c *call) inDialog(d *dialog, req *sip.Request, tx sip.ServerTransaction) {
	if req.IsAck() {
		c.gotAck(d, req)
		return
	}
	if !d.checkRemoteCSeq(req) {
		respond(tx, sip.NewResponseFromRequest(req, 500, "Out of Order CSeq", nil))
		return
	}
	c.mu.Lock()
	answered, ended := !c.answered.IsZero(), c.ended
	c.mu.Unlock()
	if ended {
		respond(tx, sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		return
	}
	switch req.Method {
	case sip.BYE:
		respond(tx, sip.NewResponseFromRequest(req, 200, "OK", nil))
		if !answered {
			// the callee's early dialog cannot be ended with BYE by the caller side; treat as
			// a hangup before answer
			c.hangup(legName(d.side)+" hung up", 487)
			return
		}
		c.byeLeg(c.other(d))
		c.finish(200, legName(d.side)+" hung up")
	case sip.PRACK:
		c.gotPrack(req, tx)
	case sip.OPTIONS:
		r := sip.NewResponseFromRequest(req, 200, "OK", nil)
		r.AppendHeader(sip.NewHeader("Allow", allowMethods))
		respond(tx, r)
	case sip.INVITE, sip.UPDATE:
		if !answered {
			respond(tx, sip.NewResponseFromRequest(req, 491, "Request Pending", nil))
			return
		}
		c.mu.Lock()
		busy := c.pending
		c.pending = true
		c.mu.Unlock()
		if busy {
			// glare: an offer/answer exchange is already under way on this call
			r := sip.NewResponseFromRequest(req, 491, "Request Pending", nil)
			respond(tx, r)
			return
		}
		// synchronous: sipgo ends the server transaction when the handler returns
		c.relayOffer(d, req, tx, func() {
			c.mu.Lock()
			c.pending = false
			c.mu.Unlock()
		})
	case sip.INFO:
		if !answered {
			respond(tx, sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
			return
		}
		c.relayPlain(d, req, tx)
	default:
		r := sip.NewResponseFromRequest(req, 405, "Method Not Allowed", nil)
		r.AppendHeader(sip.NewHeader("Allow", allowMethods))
		respond(tx, r)
	}
}

// gotAck delivers an ACK to whoever waits for it (a 2xx we retransmit).
func (c *call) gotAck(d *dialog, req *sip.Request) {
	cs := req.CSeq()
	if cs == nil {
		return
	}
	k := ackKey{d.side, cs.SeqNo}
	c.mu.Lock()
	ch := c.acks[k]
	delete(c.acks, k)
	c.mu.Unlock()
	if ch != nil {
		ch <- req
	}
}

func (c *call) gotPrack(req *sip.Request, tx sip.ServerTransaction) {
	rack := headerValue(req, "RAck")
	var rseq uint64
	for i, f := range splitFields(rack) {
		if i == 0 {
			rseq, _ = strconv.ParseUint(f, 10, 32)
		}
	}
	c.mu.Lock()
	ch := c.pracks[uint32(rseq)]
	delete(c.pracks, uint32(rseq))
	c.mu.Unlock()
	if ch == nil {
		respond(tx, sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		return
	}
	close(ch)
	respond(tx, sip.NewResponseFromRequest(req, 200, "OK", nil))
}

func splitFields(s string) []string {
	var out []string
	start := -1
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ' ' || s[i] == '\t' {
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	return out
}

// relayOffer carries a re-INVITE or UPDATE from leg d to the other leg: the SDP goes through
// the media session both ways, the answer comes back to d. A 2xx to a re-INVITE is ACKed on
// the other leg by us; the peer's ACK on leg d is absorbed (or carries the answer to an
// offerless re-INVITE, which is then sent in our ACK).
// done is called once the offer/answer exchange is over (the 2xx for an INVITE with an offer,
// the ACK for an offerless one, or the failure), before the final answer is sent, so the peer's
// next offer, sent as soon as it has the answer, does not meet a 491.
func (c *call) relayOffer(d *dialog, req *sip.Request, tx sip.ServerTransaction, done func()) {
	x := &exchange{done: done}
	defer x.end()
	o := c.other(d)
	offerless := !hasSDP(req)
	body, ok := c.offerBody(d, req, offerless)
	if !ok {
		x.end()
		respond(tx, sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil))
		return
	}
	out := c.offerRequest(o, req, body)
	res, otx, err := c.transact(out)
	if err != nil || res == nil {
		x.end()
		respond(tx, sip.NewResponseFromRequest(req, 408, "Request Timeout", nil))
		if err != nil {
			c.e.log.Debug("re-offer not answered", "call", c.id, "error", err)
		}
		return
	}
	if otx != nil {
		defer otx.Terminate()
	}
	reply := c.offerReply(d, o, req, res, offerless)
	if req.Method != sip.INVITE || !res.IsSuccess() {
		x.end() // before the answer goes out: the peer may start the next exchange at once
		respond(tx, reply)
		if res.StatusCode == 481 || res.StatusCode == 408 {
			c.hangup(legName(o.side)+" lost the dialog", 0)
		}
		return
	}
	c.reinviteAnswered(d, req, tx, out, reply, offerless, x)
}

// exchange is one offer/answer exchange relayed in a dialog (relayOffer).
type exchange struct {
	done     func() // tells the call the exchange is over
	finished bool
}

// end calls done once.
func (x *exchange) end() {
	if !x.finished {
		x.finished = true
		x.done()
	}
}

// offerBody is the offer of req as leg o gets it (the media relay's rewrite); nil for an
// offerless request. False: the relay refused the offer.
func (c *call) offerBody(d *dialog, req *sip.Request, offerless bool) ([]byte, bool) {
	if offerless {
		return nil, true
	}
	if c.media == nil {
		return req.Body(), true
	}
	body, err := c.media.Offer(d.side, req.Body(), d.peer)
	return body, err == nil
}

// offerRequest is req relayed on leg o with body as its offer.
func (c *call) offerRequest(o *dialog, req *sip.Request, body []byte) *sip.Request {
	e := c.e
	out := o.newRequest(req.Method, 0, sip.ContactHeader{Address: e.cfg.Contact(o.transport)})
	copyHeaders(req, out, false, e.cfg.PassUserAgent)
	if body != nil {
		if out.GetHeader("Content-Type") == nil {
			out.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		}
		out.SetBody(body)
		o.setSDP(body)
	} else {
		out.RemoveHeader("Content-Type")
	}
	out.AppendHeader(sip.NewHeader("Allow", allowMethods))
	return out
}

// offerReply is leg o's answer res relayed back to d: its SDP through the media relay (an
// answer, or the offer of an offerless request), our Contact on a 2xx.
func (c *call) offerReply(d, o *dialog, req *sip.Request, res *sip.Response, offerless bool) *sip.Response {
	e := c.e
	var back []byte
	if hasSDP(res) && res.IsSuccess() {
		back = res.Body()
		if c.media != nil {
			var err error
			if offerless {
				back, err = c.media.Offer(o.side, res.Body(), o.peer)
			} else {
				back, err = c.media.Answer(o.side, res.Body(), o.peer)
			}
			if err != nil {
				back = nil
			}
		}
	}
	if res.IsSuccess() && !offerless {
		c.noteSDP(d, req.Body(), o, res.Body()) // what a survivor needs if this node dies (adopt.go)
	}
	reply := sip.NewResponseFromRequest(req, res.StatusCode, res.Reason, back)
	if to := reply.To(); to != nil {
		to.Params.Add("tag", d.localTag)
	}
	copyHeaders(res, reply, false, e.cfg.PassUserAgent)
	if back == nil {
		reply.RemoveHeader("Content-Type")
	} else {
		d.setSDP(back)
	}
	if res.IsSuccess() {
		reply.AppendHeader(&sip.ContactHeader{Address: e.contactFor(d.transport, d.peer)})
		reply.AppendHeader(sip.NewHeader("Allow", allowMethods))
	}
	return reply
}

// reinviteAnswered completes a re-INVITE the other leg answered with a 2xx: that leg gets our
// ACK (now, or with the answer from d's ACK to an offerless re-INVITE), d gets the 2xx until it
// ACKs.
func (c *call) reinviteAnswered(d *dialog, req *sip.Request, tx sip.ServerTransaction, out *sip.Request, reply *sip.Response, offerless bool, x *exchange) {
	o := c.other(d)
	ackOther := func(ackBody []byte) {
		ack := o.newRequest(sip.ACK, out.CSeq().SeqNo, sip.ContactHeader{})
		if len(ackBody) > 0 {
			ack.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			ack.SetBody(ackBody)
		}
		_ = c.e.deps.Client.WriteRequest(ack)
	}
	if !offerless {
		ackOther(nil)
	}
	ch := c.expectAck(d, req.CSeq().SeqNo)
	if !offerless {
		x.end()
		respond(tx, reply)
		go c.awaitAck(d, reply, func() { respond(tx, reply) }, ch, func(*sip.Request) {})
		return
	}
	x.finished = true // the exchange ends with the ACK that carries the answer
	respond(tx, reply)
	go c.awaitAck(d, reply, func() { respond(tx, reply) }, ch, func(ack *sip.Request) {
		defer x.done()
		ab := c.ackAnswer(d.side, ack, d.peer)
		o.setSDP(ab)
		ackOther(ab)
	})
}

// relayPlain carries an INFO (DTMF, fast picture update) to the other leg and its answer back.
func (c *call) relayPlain(d *dialog, req *sip.Request, tx sip.ServerTransaction) {
	o := c.other(d)
	out := o.newRequest(req.Method, 0, sip.ContactHeader{Address: c.e.cfg.Contact(o.transport)})
	copyHeaders(req, out, false, c.e.cfg.PassUserAgent)
	if b := req.Body(); len(b) > 0 {
		out.SetBody(b)
	}
	res, otx, err := c.transact(out)
	if otx != nil {
		defer otx.Terminate()
	}
	if err != nil || res == nil {
		respond(tx, sip.NewResponseFromRequest(req, 408, "Request Timeout", nil))
		return
	}
	reply := sip.NewResponseFromRequest(req, res.StatusCode, res.Reason, res.Body())
	if to := reply.To(); to != nil {
		to.Params.Add("tag", d.localTag)
	}
	copyHeaders(res, reply, false, c.e.cfg.PassUserAgent)
	respond(tx, reply)
}

// transact sends a request and waits for its final response (at most 32 s, RFC 3261 Timer F).
func (c *call) transact(req *sip.Request) (*sip.Response, sip.ClientTransaction, error) {
	return c.transactWithin(req, 32*time.Second)
}

// transactWithin is transact with a shorter wait.
func (c *call) transactWithin(req *sip.Request, wait time.Duration) (*sip.Response, sip.ClientTransaction, error) {
	ctx, done := context.WithTimeout(context.Background(), wait)
	defer done()
	tx, err := c.e.deps.Client.TransactionRequest(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return res, tx, nil
		case <-tx.Done():
			return nil, tx, tx.Err()
		case <-ctx.Done():
			return nil, tx, ctx.Err()
		}
	}
}
