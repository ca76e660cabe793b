package b2bua

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/media"
	"github.com/portcullis-sbc/portcullis/sbc/digest"
)

// call is one bridged call: leg A toward the caller (we are its UAS), leg B toward the callee
// (we are its UAC).
type call struct {
	e         *Engine
	id        string
	dir       state.Direction
	room      string // the room: callee of inbound calls, caller of outbound ones
	from, to  string
	source    netip.AddrPort
	started   time.Time
	transport string

	ainv      *sip.Request // the caller's INVITE
	atx       sip.ServerTransaction
	a, b      *dialog
	media     Session
	strip     bool // strip auto-answer headers toward the callee
	offerless bool // the caller's INVITE carried no SDP: the offer comes in the 2xx
	aTimer    bool // the caller supports session timers
	bOffer    []byte
	fromTrunk bool   // handed over by another node, which keeps the call's records
	trunkFrom string // the node that handed it over (fromTrunk)

	mu        sync.Mutex
	st        state.CallState
	answered  time.Time
	ended     bool
	cancelled bool
	status    int
	pending   bool // an offer/answer exchange is in progress (a second one gets 491)
	timers    []*time.Timer
	acks      map[ackKey]chan *sip.Request
	pracks    map[uint32]chan struct{}
	rseq      uint32
	cancelCh  chan struct{}
	bNode     string // the node leg B was handed to over the internal trunk (answered calls)
	recorded  bool   // the cluster ended the call in the state and wrote its record (lost.go)
}

type ackKey struct {
	side media.Leg
	cseq uint32
}

// newID returns a random identifier of n bytes in hex.
func newID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

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

// prepare creates the call and its leg A, answers 100 and offers the caller's SDP to the media
// relay. It answers the INVITE itself and returns nil when the call cannot be made.
func (e *Engine) prepare(req *sip.Request, tx sip.ServerTransaction, dir state.Direction, room, caller string, fromTrunk bool) *call {
	if e.cfg.RequireSDP && !hasSDP(req) {
		respond(tx, sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil))
		return nil
	}
	aTimer := hasOption(req, "Supported", "timer") || hasOption(req, "Require", "timer")
	if se, ok := sessionExpires(req); ok && e.cfg.SessionExpires > 0 && se < e.cfg.MinSE {
		r := sip.NewResponseFromRequest(req, 422, "Session Interval Too Small", nil)
		r.AppendHeader(sip.NewHeader("Min-SE", strconv.Itoa(int(e.cfg.MinSE/time.Second))))
		respond(tx, r)
		return nil
	}
	from, to := req.From(), req.To()
	ftag, _ := from.Params.Get("tag")
	src := sourceAddr(req)
	c := &call{
		e: e, id: newID(8), dir: dir, room: room, source: src, started: time.Now().UTC(),
		transport: req.Transport(), ainv: req, atx: tx, st: state.CallRinging, aTimer: aTimer, fromTrunk: fromTrunk,
		from: from.Address.Addr(), to: to.Address.Addr(), offerless: !hasSDP(req),
		acks: map[ackKey]chan *sip.Request{}, pracks: map[uint32]chan struct{}{}, cancelCh: make(chan struct{}),
	}
	c.a = &dialog{side: media.LegA, callID: string(*req.CallID()), localTag: sip.GenerateTagN(16), remoteTag: ftag,
		local: to.Address, localName: displayName(to.DisplayName), remote: from.Address, remoteName: displayName(from.DisplayName),
		target: req.Contact().Address, routes: routeSetFrom(req, false), dest: req.Source(), transport: req.Transport(),
		remoteCSeq: req.CSeq().SeqNo, peer: src, update: allowsUpdate(req)}
	c.b = &dialog{side: media.LegB, callID: newID(16), localTag: sip.GenerateTagN(16)}
	if fromTrunk {
		c.trunkFrom = trunkNode(req)
	}
	if !e.register(c) {
		r := sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil)
		r.AppendHeader(sip.NewHeader("Retry-After", "30"))
		respond(tx, r)
		return nil
	}
	if e.deps.Media != nil {
		s, err := e.deps.Media.NewSession(c.id, func(reason string) { c.hangup(reason, 0) })
		e.noteMedia(err)
		if err != nil {
			c.finish(503, "media ports exhausted")
			r := sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil)
			r.AppendHeader(sip.NewHeader("Retry-After", "5"))
			respond(tx, r)
			return nil
		}
		c.setMedia(s)
	}
	c.bOffer = req.Body()
	if !c.offerless && c.media != nil {
		body, err := c.media.Offer(media.LegA, req.Body(), src)
		if err != nil {
			code := 488
			switch {
			case errors.Is(err, media.ErrPoolExhausted):
				code = 503
				e.noteMedia(err)
			case errors.Is(err, media.ErrSourceBusy):
				code = 503
			}
			c.finish(code, "caller SDP refused: "+err.Error())
			r := sip.NewResponseFromRequest(req, code, ReasonPhrase(code), nil)
			if errors.Is(err, media.ErrSourceBusy) {
				r.AppendHeader(sip.NewHeader("Retry-After", "30"))
			}
			if f := e.cfg.MediaRefused; f != nil && (errors.Is(err, media.ErrSourceBusy) || errors.Is(err, media.ErrTooManyStreams)) {
				f(src, req.Transport(), code, err)
			}
			respond(tx, r)
			return nil
		}
		c.bOffer = body
	}
	e.index(c, c.a)
	e.index(c, c.b)
	respond(tx, sip.NewResponseFromRequest(req, 100, "Trying", nil))
	tx.OnCancel(func(*sip.Request) { c.callerCancelled() })
	return c
}

func (c *call) callerCancelled() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st != state.CallRinging || c.cancelled {
		return
	}
	c.cancelled = true
	close(c.cancelCh)
}

// branch is one INVITE of leg B (one per binding when forking, one per target on failover).
type branch struct {
	t        target
	req      *sip.Request
	tx       sip.ClientTransaction
	answered bool // got a provisional response other than 100
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
	best := 0
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
					if best == 0 {
						best = 408
					}
				}
				continue
			}
			res := ev.res
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
	var silent <-chan time.Time // a flow with alternates that says nothing is given up on
	if len(t.alt) > 0 {
		// TargetTimeout, but within the first half of the ring time: the next flow must ring too
		st := time.NewTimer(min(e.cfg.TargetTimeout, e.cfg.RingTimeout/2))
		silent = st.C
		go func() { <-tx.Done(); st.Stop() }()
	}
	go func() {
		for {
			select {
			case <-silent:
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
	}()
	return b
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

// allowMethods is what both legs are told we accept in a dialog.
const allowMethods = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK"

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

	var bodyA []byte
	if hasSDP(res) {
		bodyA = res.Body()
		if c.media != nil {
			var err error
			if c.offerless {
				bodyA, err = c.media.Offer(media.LegB, res.Body(), b.t.peer)
			} else {
				bodyA, err = c.media.Answer(media.LegB, res.Body(), b.t.peer)
			}
			if err != nil {
				e.log.Info("callee SDP refused", "call", c.id, "error", err)
				c.ack(b, res, nil)
				c.byeLeg(c.b)
				c.failA(488, "callee SDP refused: "+err.Error())
				return false
			}
		}
	}
	if !c.offerless {
		c.ack(b, res, nil)
	}
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
	c.a.setSDP(bodyA)
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		c.ack(b, res, nil)
		c.byeLeg(c.b)
		return false
	}
	c.st = state.CallAnswered
	c.answered = time.Now().UTC()
	c.status = 200
	c.bNode = b.t.node
	c.mu.Unlock()
	if !c.fromTrunk {
		e.deps.Store.Enqueue(state.PutCall(c.snapshot()))
	}
	ackCh := c.expectAck(c.a, c.ainv.CSeq().SeqNo)
	respond(c.atx, out)
	go c.awaitAck(c.a, out, func() { respond(c.atx, out) }, ackCh, func(ack *sip.Request) {
		if c.offerless {
			var body []byte
			if hasSDP(ack) {
				body = ack.Body()
				if c.media != nil {
					var err error
					if body, err = c.media.Answer(media.LegA, ack.Body(), c.source); err != nil {
						body = nil
					}
				}
			}
			c.b.setSDP(body)
			c.ack(b, res, body)
		}
	})
	c.armTimers()
	e.log.Debug("call answered", "call", c.id, "room", c.room, "direction", c.dir)
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
	send := func() { _ = c.e.deps.Client.WriteRequest(ack) }
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
	c.e.wg.Add(1)
	go func() {
		defer c.e.wg.Done()
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
// then(ack). Without an ACK in 64*T1 the call is ended.
func (c *call) awaitAck(d *dialog, res *sip.Response, resend func(), ch chan *sip.Request, then func(*sip.Request)) {
	wait := sip.T1
	deadline := time.NewTimer(64 * sip.T1)
	defer deadline.Stop()
	reliable := sip.IsReliable(d.transport)
	tick := time.NewTimer(wait)
	defer tick.Stop()
	for {
		select {
		case ack := <-ch:
			then(ack)
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

func legName(l media.Leg) string {
	if l == media.LegA {
		return "caller"
	}
	return "callee"
}

// setMedia attaches the call's media session. The call is already in the engine's table, so
// other goroutines (MediaStats for the admin API, a hang-up) may look at it at once: they read
// it through mediaSession, under c.mu.
func (c *call) setMedia(s Session) {
	c.mu.Lock()
	c.media = s
	c.mu.Unlock()
}

// mediaSession returns the call's media session (nil when it has none), for goroutines other
// than the call's own.
func (c *call) mediaSession() Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.media
}

// finish ends the call's bookkeeping: the record, the media, the table.
func (c *call) finish(status int, reason string) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended = true
	if c.status == 0 || status >= 300 {
		c.status = status
	}
	for _, t := range c.timers {
		t.Stop()
	}
	c.timers = nil
	answered := c.answered
	st := c.status
	recorded := c.recorded
	m := c.media
	c.mu.Unlock()
	if m != nil {
		m.Close()
	}
	now := time.Now().UTC()
	rec := state.CallRecord{Call: c.snapshot(), Ended: now, EndReason: reason, Status: st}
	rec.State = state.CallEnded
	if !answered.IsZero() {
		rec.Duration = now.Sub(answered)
	}
	if !c.fromTrunk && !recorded { // the node that handed the call over (or the cluster) records it
		c.e.deps.Store.Enqueue(state.EndCall(rec))
		if c.e.cfg.CallEnded != nil {
			c.e.cfg.CallEnded(rec)
		}
	}
	c.e.unregister(c)
	c.e.log.Debug("call ended", "call", c.id, "room", c.room, "status", st, "reason", reason)
}

// snapshot is the call as the call table shows it.
func (c *call) snapshot() state.Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return state.Call{ID: c.id, Room: c.room, Direction: c.dir, From: c.from, To: c.to, Source: c.source.String(),
		Node: c.e.cfg.NodeID, State: c.st, A: c.a.stateLeg(), B: c.b.stateLeg(), Started: c.started, Answered: c.answered}
}

// hangup ends the call on both legs with a reason (BYE on answered legs; before the answer
// the caller gets status or 480, the callee's branches are cancelled by setup).
func (c *call) hangup(reason string, status int) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	answered := c.st == state.CallAnswered
	c.mu.Unlock()
	if !answered {
		c.callerCancelled()
		if status == 0 {
			status = 480
		}
		c.failA(status, reason)
		return
	}
	c.byeLeg(c.a)
	c.byeLeg(c.b)
	c.finish(200, reason)
}

// ReasonPhrase is the reason phrase the node sends with a status code.
func ReasonPhrase(code int) string {
	switch code {
	case 400:
		return "Bad Request"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 408:
		return "Request Timeout"
	case 429:
		return "Too Many Requests"
	case 480:
		return "Temporarily Unavailable"
	case 483:
		return "Too Many Hops"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	case 488:
		return "Not Acceptable Here"
	case 491:
		return "Request Pending"
	case 503:
		return "Service Unavailable"
	case 600:
		return "Busy Everywhere"
	case 603:
		return "Decline"
	}
	if code >= 600 {
		return "Global Failure"
	}
	if code >= 500 {
		return "Server Error"
	}
	if code >= 400 {
		return "Request Failure"
	}
	return "Redirect"
}
