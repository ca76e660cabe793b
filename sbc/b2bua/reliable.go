// Provisional answers and reliable provisionals (RFC 3262, 100rel/PRACK) on both legs.

package b2bua

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/portcullis-sbc/portcullis/media"
)

// provisional relays a 18x from leg B to the caller, acknowledging reliable ones (PRACK) on
// leg B itself.
func (c *call) provisional(b *branch, res *sip.Response) {
	tag, _ := res.To().Params.Get("tag")
	if hasOption(res, "Require", "100rel") && tag != "" {
		c.prack(b, res)
	}
	var body []byte
	if hasSDP(res) {
		if c.offerless {
			body = nil // an offer in a provisional response to an offerless INVITE is not relayed
		} else if c.media != nil {
			out, err := c.media.Answer(media.LegB, res.Body(), b.t.peer)
			if err != nil {
				c.e.log.Debug("early SDP refused", "call", c.id, "error", err)
			} else {
				body = out
			}
		} else {
			body = res.Body()
		}
	}
	out := c.responseA(res.StatusCode, res.Reason, body)
	copyHeaders(res, out, false, c.e.cfg.PassUserAgent)
	if body == nil {
		out.RemoveHeader("Content-Type")
	}
	if len(body) > 0 && (hasOption(c.ainv, "Require", "100rel") || hasOption(c.ainv, "Supported", "100rel")) {
		c.reliableA(out)
		return
	}
	respond(c.atx, out)
}

// prack acknowledges a reliable provisional response of leg B (RFC 3262).
func (c *call) prack(b *branch, res *sip.Response) {
	rseq := headerValue(res, "RSeq")
	if rseq == "" || res.Contact() == nil {
		return
	}
	tag, _ := res.To().Params.Get("tag")
	d := &dialog{callID: c.b.callID, localTag: c.b.localTag, remoteTag: tag, local: c.b.local, localName: c.b.localName,
		remote: c.b.remote, target: res.Contact().Address, routes: routeSetFrom(res, true),
		dest: b.t.dest, transport: b.t.transport, cseq: c.b.nextCSeq()}
	req := d.newRequest(sip.PRACK, d.cseq, sip.ContactHeader{Address: c.e.cfg.Contact(b.t.transport)})
	req.AppendHeader(sip.NewHeader("RAck", strings.TrimSpace(rseq)+" "+strconv.Itoa(int(res.CSeq().SeqNo))+" INVITE"))
	go func() {
		ctx, done := context.WithTimeout(context.Background(), 32*time.Second)
		defer done()
		_, _ = c.e.deps.Client.Do(ctx, req)
	}()
}

// reliableA sends a provisional response to the caller reliably: retransmitted until the
// caller's PRACK (RFC 3262).
func (c *call) reliableA(res *sip.Response) {
	c.mu.Lock()
	c.rseq++
	rseq := c.rseq
	got := make(chan struct{})
	c.pracks[rseq] = got
	c.mu.Unlock()
	res.AppendHeader(sip.NewHeader("Require", "100rel"))
	res.AppendHeader(sip.NewHeader("RSeq", strconv.Itoa(int(rseq))))
	respond(c.atx, res)
	if sip.IsReliable(c.transport) {
		return
	}
	go func() {
		wait := sip.T1
		deadline := time.After(64 * sip.T1)
		for {
			select {
			case <-got:
				return
			case <-deadline:
				return
			case <-c.atx.Done():
				return
			case <-time.After(wait):
				respond(c.atx, res)
				wait = min(2*wait, sip.T2)
			}
		}
	}()
}
