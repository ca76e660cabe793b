// Call setup: the branches of leg B (forking to every target, failover, CANCEL) and what each
// branch's final answer means for the call.

package b2bua

import (
	"context"
	"net/netip"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"
)

// branch is one INVITE of leg B (one per binding when forking, one per target on failover).
type branch struct {
	t        target
	req      *sip.Request
	tx       sip.ClientTransaction
	answered bool // got a provisional response other than 100
	heard    bool // got any response (a member handed the call answers 100 at once)
	final    bool
	early    *dialog
}

type branchEvent struct {
	b   *branch
	res *sip.Response
	err error
}

// setup runs leg B until the call is answered or fails: parallel branches for inbound calls,
// targets one after the other (RFC 3263 failover) for outbound ones.
func (c *call) setup(targets []target, outboundURI *sip.Uri) {
	e := c.e
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	events := make(chan branchEvent, 8)
	var branches []*branch
	live := 0
	start := func(t target) {
		b := c.startBranch(ctx, t, events)
		if b != nil {
			branches = append(branches, b)
			live++
		}
	}
	var pendingTargets []target
	if outboundURI != nil {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ts, err := e.deps.Resolver.Resolve(rctx, *outboundURI)
		cancel()
		if err != nil || len(ts) == 0 {
			e.log.Info("outbound target not resolved", "call", c.id, "uri", outboundURI.String(), "error", err)
			c.failA(404, "target not resolved")
			return
		}
		for _, t := range ts {
			t.uri = *outboundURI
			pendingTargets = append(pendingTargets, t)
		}
		start(pendingTargets[0])
		pendingTargets = pendingTargets[1:]
	} else {
		for _, t := range targets {
			start(t)
		}
	}
	ring := time.NewTimer(e.cfg.RingTimeout)
	defer ring.Stop()
	var failover *time.Timer
	var failoverC <-chan time.Time
	if outboundURI != nil {
		failover = time.NewTimer(e.cfg.TargetTimeout)
		failoverC = failover.C
		defer failover.Stop()
	}
	best, silentNodes := 0, 0 // silentNodes: trunk branches that heard nothing (flownode.go)
	var bestRes *sip.Response
	var winner *branch
	timedOut := false
	var graceC <-chan time.Time
	cancelC := c.cancelCh
	cancelAll := func() {
		for _, b := range branches {
			if !b.final && b != winner {
				c.cancelBranch(b)
			}
		}
	}
	for live > 0 || (winner == nil && len(pendingTargets) > 0) {
		if live == 0 {
			// every target so far failed over: next
			start(pendingTargets[0])
			pendingTargets = pendingTargets[1:]
			if failover != nil {
				failover.Reset(e.cfg.TargetTimeout)
			}
			continue
		}
		select {
		case ev := <-events:
			b := ev.b
			if ev.err != nil || ev.res == nil {
				if !b.final {
					b.final = true
					live--
					if len(b.t.alt) > 0 && winner == nil && !timedOut && !c.isCancelled() {
						// RFC 5626 section 5.3: this flow failed; the instance's next one
						next := b.t.alt[0]
						next.alt = b.t.alt[1:]
						e.log.Info("flow failed; trying the next one", "call", c.id, "dest", b.t.dest, "next", next.dest, "error", ev.err)
						start(next)
						continue
					}
					if b.t.trunk && !b.heard {
						silentNodes++
					} else if best == 0 {
						best = 408
					}
				}
				continue
			}
			res := ev.res
			b.heard = true
			switch {
			case res.StatusCode < 200:
				if res.StatusCode > 100 {
					b.answered = true
					if failover != nil {
						failover.Stop()
					}
					if winner == nil && !c.isCancelled() {
						c.provisional(b, res)
					}
				}
			case res.StatusCode < 300:
				b.final = true
				live--
				if winner != nil || c.isCancelled() {
					c.ackAndBye(b, res) // a second answer, or the CANCEL/200 race: release it
					continue
				}
				winner = b
				cancelAll()
				if !c.answer(b, res) {
					return
				}
			default:
				b.final = true
				live--
				code := res.StatusCode
				if code == 503 && len(pendingTargets) > 0 && winner == nil {
					continue // RFC 3263: the next target
				}
				if b.t.trunk && !b.answered && len(b.t.alt) > 0 && (code == 408 || code == 480 || code == 503) &&
					winner == nil && !timedOut && !c.isCancelled() {
					// the other node could not reach the instance over its flow: the next flow
					next := b.t.alt[0]
					next.alt = b.t.alt[1:]
					e.log.Info("flow failed on its node; trying the next one", "call", c.id, "node", b.t.node, "status", code, "next", next.dest)
					start(next)
					continue
				}
				if code >= 300 && code < 400 && c.e.cfg.Follow3xx && outboundURI != nil && winner == nil {
					for _, h := range res.GetHeaders("Contact") {
						if ch, ok := h.(*sip.ContactHeader); ok && len(pendingTargets) < 5 {
							rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
							ts, err := e.deps.Resolver.Resolve(rctx, ch.Address)
							cancel()
							if err == nil {
								for _, t := range ts {
									t.uri = ch.Address
									pendingTargets = append(pendingTargets, t)
								}
							}
						}
					}
					continue
				}
				if better(code, best) {
					best, bestRes = code, res
				}
				if code >= 600 {
					cancelAll()
				}
			}
		case <-cancelC:
			if winner == nil {
				cancelC = nil // the channel is closed: stop selecting it
				cancelAll()
				pendingTargets = nil
			}
		case <-ring.C:
			if winner == nil {
				cancelAll()
				pendingTargets = nil
				timedOut = true
				// the caller gets its answer soon even if a callee never answers the CANCEL
				graceC = time.After(2 * time.Second)
			}
		case <-graceC:
			for _, b := range branches {
				if !b.final && b != winner {
					b.final = true
					live--
					if b.tx != nil {
						b.tx.Terminate()
					}
				}
			}
		case <-failoverC:
			// the current target said nothing at all: give up on it
			for _, b := range branches {
				if !b.final && !b.answered {
					c.cancelBranch(b)
					if b.tx != nil { // nil when the INVITE could not be sent
						b.tx.Terminate()
					}
				}
			}
		}
	}
	if winner != nil {
		return
	}
	if c.isCancelled() {
		c.finish(487, "caller cancelled")
		return
	}
	if timedOut {
		best, bestRes = 408, nil
	}
	if best == 0 && silentNodes > 0 {
		c.failFlowDown()
		return
	}
	if best == 0 {
		best = 480
	}
	if best >= 300 && best < 400 {
		// a redirect is not followed (calls.follow_3xx) and its Contact stays on leg B: the
		// caller learns the call failed, not where the callee pointed
		c.failA(480, "callee redirected (not followed)")
		return
	}
	c.failA(best, failReason(best, bestRes))
}

func failReason(code int, res *sip.Response) string {
	switch code {
	case 408:
		return "no answer"
	case 486, 600:
		return "busy"
	case 487:
		return "cancelled"
	}
	if res != nil {
		return "callee refused: " + strconv.Itoa(code) + " " + res.Reason
	}
	return "callee refused: " + strconv.Itoa(code)
}

// better reports whether final status a beats b as the response to send upstream
// (RFC 3261 16.7: 6xx first, then the lowest class, 4xx before 5xx; 408 from a silent branch
// loses against anything heard).
func better(a, b int) bool {
	if b == 0 {
		return true
	}
	if a >= 600 || b >= 600 {
		return a >= 600 && b < 600
	}
	if b == 408 && a != 408 {
		return true
	}
	if a/100 != b/100 {
		return a/100 < b/100
	}
	return false
}

func (c *call) isCancelled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cancelled || c.ended
}

// startBranch sends one INVITE of leg B.
func (c *call) startBranch(ctx context.Context, t target, events chan<- branchEvent) *branch {
	e := c.e
	req := sip.NewRequest(sip.INVITE, t.uri)
	from := &sip.FromHeader{DisplayName: c.b.localName, Address: c.b.local}
	from.Params.Add("tag", c.b.localTag)
	to := &sip.ToHeader{Address: c.b.remote}
	cid := sip.CallIDHeader(c.b.callID)
	mf := sip.MaxForwardsHeader(70)
	if in := c.ainv.MaxForwards(); in != nil && int(*in)-1 < 70 {
		mf = sip.MaxForwardsHeader(int(*in) - 1)
	}
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	req.AppendHeader(&mf)
	contact := sip.ContactHeader{Address: e.cfg.Contact(t.transport)}
	req.AppendHeader(&contact)
	req.AppendHeader(sip.NewHeader("Allow", allowMethods))
	req.AppendHeader(sip.NewHeader("Supported", "100rel, timer"))
	if se := e.cfg.SessionExpires; se > 0 {
		req.AppendHeader(sip.NewHeader("Session-Expires", strconv.Itoa(int(se/time.Second))+";refresher=uac"))
		req.AppendHeader(sip.NewHeader("Min-SE", strconv.Itoa(int(e.cfg.MinSE/time.Second))))
	}
	if e.cfg.UserAgent != "" && !e.cfg.PassUserAgent {
		req.AppendHeader(sip.NewHeader("User-Agent", e.cfg.UserAgent))
	}
	if t.trunk {
		req.AppendHeader(sip.NewHeader(TrunkHeader, SignTrunk(e.deps.Store.State().TrunkKey(), e.cfg.NodeID, c.b.callID, c.b.remote.User, time.Now())))
		if t.relay {
			req.AppendHeader(sip.NewHeader(RelayHeader, "1"))
		}
	}
	copyHeaders(c.ainv, req, c.strip, e.cfg.PassUserAgent)
	if len(c.bOffer) > 0 {
		if req.GetHeader("Content-Type") == nil {
			req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		}
		body := c.bOffer
		if f, ok := c.media.(familyReaddresser); ok && !t.trunk && t.peer.IsValid() {
			body = f.ForPeer(body, t.peer) // an IPv6 room gets the relay's IPv6 address
		}
		req.SetBody(body)
	}
	req.SetDestination(t.dest)
	req.SetTransport(t.transport)
	b := &branch{t: t, req: req}
	c.b.mu.Lock()
	c.b.cseq = 1
	c.b.mu.Unlock()
	tx, err := e.deps.Client.TransactionRequest(ctx, req)
	if err != nil {
		e.log.Info("branch not sent", "call", c.id, "dest", t.dest, "error", err)
		go func() { events <- branchEvent{b: b, err: err} }()
		return b
	}
	b.tx = tx
	go c.watchBranch(ctx, b, events)
	return b
}

// watchBranch passes the responses of branch b's transaction to events until its final one or
// its end, and gives up on a branch that says nothing at all (silentAfter, flownode.go).
func (c *call) watchBranch(ctx context.Context, b *branch, events chan<- branchEvent) {
	e, t, tx := c.e, b.t, b.tx
	var silent <-chan time.Time // a flow with alternates, or a member, that says nothing is given up on
	var st *time.Timer
	if d, ok := e.silentAfter(t); ok {
		st = time.NewTimer(d)
		silent = st.C
		defer st.Stop()
	}
	for {
		select {
		case <-silent:
			if more := e.stillSilent(t); more > 0 {
				st.Reset(more) // the member answers pings: slow, not gone
				continue
			}
			silent = nil
			tx.Terminate() // nothing at all, not even 100: the next flow (tx.Done reports it)
		case res := <-tx.Responses():
			silent = nil
			select {
			case events <- branchEvent{b: b, res: res}:
			case <-ctx.Done():
				c.late(b, res)
			}
			if res.StatusCode >= 200 {
				return
			}
		case <-tx.Done():
			select {
			case events <- branchEvent{b: b, err: tx.Err()}:
			case <-ctx.Done():
			}
			return
		}
	}
}

// familyReaddresser is a media session that can rewrite an offer for the address family of
// the branch it goes to (media.Session: media.advertise6).
type familyReaddresser interface {
	ForPeer(body []byte, peer netip.AddrPort) []byte
}

// late handles a branch's response after the setup loop ended: an answer that nobody wants
// any more is acknowledged and hung up.
func (c *call) late(b *branch, res *sip.Response) {
	if res.IsSuccess() {
		c.ackAndBye(b, res)
	}
}

// cancelBranch sends CANCEL for a pending branch.
func (c *call) cancelBranch(b *branch) {
	if b.tx == nil || b.final {
		return
	}
	r := b.req
	cancel := sip.NewRequest(sip.CANCEL, r.Recipient)
	cancel.AppendHeader(sip.HeaderClone(r.Via()))
	cancel.AppendHeader(sip.HeaderClone(r.From()))
	cancel.AppendHeader(sip.HeaderClone(r.To()))
	cancel.AppendHeader(sip.HeaderClone(r.CallID()))
	cancel.AppendHeader(&sip.CSeqHeader{SeqNo: r.CSeq().SeqNo, MethodName: sip.CANCEL})
	mf := sip.MaxForwardsHeader(70)
	cancel.AppendHeader(&mf)
	cancel.SetDestination(r.Destination())
	cancel.SetTransport(r.Transport())
	go func() {
		ctx, done := context.WithTimeout(context.Background(), 32*time.Second)
		defer done()
		tx, err := c.e.deps.Client.TransactionRequest(ctx, cancel)
		if err != nil {
			return
		}
		defer tx.Terminate()
		select {
		case <-tx.Responses():
		case <-tx.Done():
		case <-ctx.Done():
		}
	}()
}
