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

// fork is the state of a call's leg B while it is set up: its branches, the outbound targets
// still to try, and the best final answer heard so far. Only setup's goroutine touches it.
type fork struct {
	c        *call
	ctx      context.Context // ends with setup: branch goroutines stop reporting then
	events   chan branchEvent
	outbound *sip.Uri // the outbound call's target (RFC 3263 failover); nil for inbound calls

	branches []*branch
	live     int      // branches without a final answer
	pending  []target // outbound targets not tried yet
	winner   *branch  // the branch whose 2xx answered the call
	best     int      // the best final status so far (better)
	bestRes  *sip.Response
	timedOut bool // the ring timeout struck
	// silentNodes counts trunk branches that heard nothing (flownode.go): with no other
	// answer, the caller gets 480 with Retry-After
	silentNodes int

	failover  *time.Timer // outbound: the current target said nothing within TargetTimeout
	failoverC <-chan time.Time
	graceC    <-chan time.Time // after the ring timeout: stop waiting for CANCELs' answers
	cancelC   <-chan struct{}  // the caller cancelled (nil once seen)
}

// setup runs leg B until the call is answered or fails: parallel branches for inbound calls,
// targets one after the other (RFC 3263 failover) for outbound ones.
func (c *call) setup(targets []target, outboundURI *sip.Uri) {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	f := &fork{c: c, ctx: ctx, events: make(chan branchEvent, 8), outbound: outboundURI, cancelC: c.cancelCh}
	if !f.begin(targets) {
		return
	}
	ring := time.NewTimer(c.e.cfg.RingTimeout)
	defer ring.Stop()
	if outboundURI != nil {
		f.failover = time.NewTimer(c.e.cfg.TargetTimeout)
		f.failoverC = f.failover.C
		defer f.failover.Stop()
	}
	f.run(ring.C)
	f.conclude()
}

// begin starts the first branches: one per target of an inbound call, the first resolved
// target of an outbound one. False when the outbound target does not resolve (the caller got
// its answer).
func (f *fork) begin(targets []target) bool {
	if f.outbound == nil {
		for _, t := range targets {
			f.start(t)
		}
		return true
	}
	ts, err := f.resolve(*f.outbound)
	if err != nil || len(ts) == 0 {
		f.c.e.log.Info("outbound target not resolved", "call", f.c.id, "uri", f.outbound.String(), "error", err)
		f.c.failA(404, "target not resolved")
		return false
	}
	f.pending = ts
	f.startPending()
	return true
}

// resolve returns the targets of an outbound URI (RFC 3263), each with the URI to call.
func (f *fork) resolve(u sip.Uri) ([]target, error) {
	rctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)
	defer cancel()
	ts, err := f.c.e.deps.Resolver.Resolve(rctx, u)
	out := make([]target, 0, len(ts)) // the resolver's slice stays its own
	for _, t := range ts {
		t.uri = u
		out = append(out, t)
	}
	return out, err
}

// start sends one branch.
func (f *fork) start(t target) {
	if b := f.c.startBranch(f.ctx, t, f.events); b != nil {
		f.branches = append(f.branches, b)
		f.live++
	}
}

// startPending sends the next outbound target.
func (f *fork) startPending() {
	t := f.pending[0]
	f.pending = f.pending[1:]
	f.start(t)
}

// run waits for the branches' answers, the caller's CANCEL and the timers until no branch is
// left and no target remains to be tried (or the answer ended the call).
func (f *fork) run(ring <-chan time.Time) {
	for f.live > 0 || (f.winner == nil && len(f.pending) > 0) {
		if f.live == 0 {
			// every target so far failed over: next
			f.startPending()
			if f.failover != nil {
				f.failover.Reset(f.c.e.cfg.TargetTimeout)
			}
			continue
		}
		select {
		case ev := <-f.events:
			if f.event(ev) {
				return
			}
		case <-f.cancelC:
			if f.winner == nil {
				f.cancelC = nil // the channel is closed: stop selecting it
				f.cancelAll()
				f.pending = nil
			}
		case <-ring:
			if f.winner == nil {
				f.cancelAll()
				f.pending = nil
				f.timedOut = true
				// the caller gets its answer soon even if a callee never answers the CANCEL
				f.graceC = time.After(2 * time.Second)
			}
		case <-f.graceC:
			f.abandon(func(b *branch) bool { return b != f.winner }, false)
		case <-f.failoverC:
			// the current target said nothing at all: give up on it
			f.abandon(func(b *branch) bool { return !b.answered }, true)
		}
	}
}

// abandon stops waiting for the pending branches that which selects: with cancel, they are
// cancelled and their transactions ended (the INVITE timer would report them); without, they
// are counted as done and their transactions ended.
func (f *fork) abandon(which func(*branch) bool, cancel bool) {
	for _, b := range f.branches {
		if b.final || !which(b) {
			continue
		}
		if cancel {
			f.c.cancelBranch(b)
		} else {
			b.final = true
			f.live--
		}
		if b.tx != nil { // nil when the INVITE could not be sent
			b.tx.Terminate()
		}
	}
}

// cancelAll cancels every branch still pending but the winner.
func (f *fork) cancelAll() {
	for _, b := range f.branches {
		if !b.final && b != f.winner {
			f.c.cancelBranch(b)
		}
	}
}

// event handles one branch's response or failure; true when setup is over (the answer could
// not be completed and the call has ended).
func (f *fork) event(ev branchEvent) bool {
	if ev.err != nil || ev.res == nil {
		f.failed(ev)
		return false
	}
	b, res := ev.b, ev.res
	b.heard = true
	switch {
	case res.StatusCode < 200:
		if res.StatusCode > 100 {
			b.answered = true
			if f.failover != nil {
				f.failover.Stop()
			}
			if f.winner == nil && !f.c.isCancelled() {
				f.c.provisional(b, res)
			}
		}
	case res.StatusCode < 300:
		b.final = true
		f.live--
		if f.winner != nil || f.c.isCancelled() {
			f.c.ackAndBye(b, res) // a second answer, or the CANCEL/200 race: release it
			return false
		}
		f.winner = b
		f.cancelAll()
		return !f.c.answer(b, res)
	default:
		b.final = true
		f.live--
		f.refused(b, res)
	}
	return false
}

// failed handles a branch that ended without a final answer (transport error, timeout): the
// UA instance's next flow is tried (RFC 5626 section 5.3), else it counts as 408.
func (f *fork) failed(ev branchEvent) {
	b := ev.b
	if b.final {
		return
	}
	b.final = true
	f.live--
	if len(b.t.alt) > 0 && f.winner == nil && !f.timedOut && !f.c.isCancelled() {
		next := b.t.alt[0]
		next.alt = b.t.alt[1:]
		f.c.e.log.Info("flow failed; trying the next one", "call", f.c.id, "dest", b.t.dest, "next", next.dest, "error", ev.err)
		f.start(next)
		return
	}
	if b.t.trunk && !b.heard {
		f.silentNodes++ // the member holding the flow said nothing (flownode.go)
	} else if f.best == 0 {
		f.best = 408
	}
}

// refused handles a branch's final refusal (3xx-6xx): the next outbound target on 503, the
// next flow when another node could not reach the instance, redirects followed when so
// configured; otherwise it competes for the answer the caller gets (a 6xx ends the others).
func (f *fork) refused(b *branch, res *sip.Response) {
	code := res.StatusCode
	open := f.winner == nil
	switch {
	case code == 503 && len(f.pending) > 0 && open:
		return // RFC 3263: the next target
	case b.t.trunk && !b.answered && len(b.t.alt) > 0 && (code == 408 || code == 480 || code == 503) &&
		open && !f.timedOut && !f.c.isCancelled():
		// the other node could not reach the instance over its flow: the next flow
		next := b.t.alt[0]
		next.alt = b.t.alt[1:]
		f.c.e.log.Info("flow failed on its node; trying the next one", "call", f.c.id, "node", b.t.node, "status", code, "next", next.dest)
		f.start(next)
		return
	case code >= 300 && code < 400 && f.c.e.cfg.Follow3xx && f.outbound != nil && open:
		f.follow(res)
		return
	}
	if better(code, f.best) {
		f.best, f.bestRes = code, res
	}
	if code >= 600 {
		f.cancelAll()
	}
}

// follow adds the targets of a redirect's Contacts to the outbound targets (at most 5 pending).
func (f *fork) follow(res *sip.Response) {
	for _, h := range res.GetHeaders("Contact") {
		if ch, ok := h.(*sip.ContactHeader); ok && len(f.pending) < 5 {
			if ts, err := f.resolve(ch.Address); err == nil {
				f.pending = append(f.pending, ts...)
			}
		}
	}
}

// conclude answers the caller when no branch answered: 487 after its CANCEL, else the best
// final answer heard (408 after the ring timeout, 480 when there was none).
func (f *fork) conclude() {
	c := f.c
	if f.winner != nil {
		return
	}
	if c.isCancelled() {
		c.finish(487, "caller cancelled")
		return
	}
	best, bestRes := f.best, f.bestRes
	if f.timedOut {
		best, bestRes = 408, nil
	}
	if best == 0 && f.silentNodes > 0 {
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
	req := c.branchRequest(t)
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
	var st *time.Timer // a flow with alternates, or a member, that says nothing is given up on
	if d, ok := e.silentAfter(t); ok {
		st = time.NewTimer(d)
		go func() { <-tx.Done(); st.Stop() }()
	}
	go c.watchBranch(ctx, b, st, events)
	return b
}

// branchRequest is the INVITE of leg B toward t: our dialog's identity, the caller's
// Max-Forwards less one (at most 70), our options and session timer, the trunk signature
// toward another node, the headers that may cross legs and the offer.
func (c *call) branchRequest(t target) *sip.Request {
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
	return req
}

// watchBranch reports a branch's responses and its end to setup; once setup is over (ctx), a
// late answer is released. A silent flow (nothing at all before st fires; nil: never) is
// given up on, but a member that answers the cluster's pings only later (stillSilent).
func (c *call) watchBranch(ctx context.Context, b *branch, st *time.Timer, events chan<- branchEvent) {
	tx := b.tx
	var silent <-chan time.Time
	if st != nil {
		silent = st.C
	}
	for {
		select {
		case <-silent:
			if more := c.e.stillSilent(b.t); more > 0 {
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
