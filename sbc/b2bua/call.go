package b2bua

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/media"
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

	mu          sync.Mutex
	st          state.CallState
	answered    time.Time
	ended       bool
	cancelled   bool
	status      int
	pending     bool // an offer/answer exchange is in progress (a second one gets 491)
	timers      []*time.Timer
	acks        map[ackKey]chan *sip.Request
	pracks      map[uint32]chan struct{}
	rseq        uint32
	cancelCh    chan struct{}
	endedCh     chan struct{} // closed when the call ends (finish)
	bNode       string        // the node leg B was handed to over the internal trunk (answered calls)
	recorded    bool          // the cluster ended the call in the state and wrote its record (lost.go)
	adoptedFrom string        // the lost node this node adopted the call from (adopt.go)
	// owned: this trunk leg's call was adopted here from its lost owner (adopt_trunk.go); it is
	// the call as the cluster's table knows it (its ID, caller, start) and this node now
	// records it.
	owned atomic.Pointer[state.Call]
	far   state.Leg // the room's leg on bNode (a call handed over the trunk; adopt_far.go)
}

// tableID is the call's ID in the engine's table and the cluster's.
func (c *call) tableID() string {
	if o := c.owned.Load(); o != nil {
		return o.ID
	}
	return c.id
}

// recordsHere reports whether this node writes the call's state and record: not for a leg
// handed over the internal trunk, unless this node adopted its call.
func (c *call) recordsHere() bool { return !c.fromTrunk || c.owned.Load() != nil }

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

// prepare creates the call and its leg A, answers 100 and offers the caller's SDP to the media
// relay. It answers the INVITE itself and returns nil when the call cannot be made. trunk is the
// node that handed the call over ("" when none did).
func (e *Engine) prepare(req *sip.Request, tx sip.ServerTransaction, dir state.Direction, room, trunk string) *call {
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
		transport: req.Transport(), ainv: req, atx: tx, st: state.CallRinging, aTimer: aTimer, fromTrunk: trunk != "", trunkFrom: trunk,
		from: from.Address.Addr(), to: to.Address.Addr(), offerless: !hasSDP(req),
		acks: map[ackKey]chan *sip.Request{}, pracks: map[uint32]chan struct{}{}, cancelCh: make(chan struct{}),
		endedCh: make(chan struct{}),
	}
	c.a = &dialog{side: media.LegA, callID: string(*req.CallID()), localTag: sip.GenerateTagN(16), remoteTag: ftag,
		local: to.Address, localName: displayName(to.DisplayName), remote: from.Address, remoteName: displayName(from.DisplayName),
		target: req.Contact().Address, routes: routeSetFrom(req, false), dest: req.Source(), transport: req.Transport(),
		remoteCSeq: req.CSeq().SeqNo, peer: src, update: allowsUpdate(req), remoteSDP: req.Body()}
	c.b = &dialog{side: media.LegB, callID: newID(16), localTag: sip.GenerateTagN(16)}
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
	// sipgo keeps the transaction, and so this hook, for 32 s after the call's answer (RFC 6026
	// Timer L); a weak pointer lets an ended call (its dialogs, SDPs, media session) be collected
	// meanwhile. A ringing call, the only one a CANCEL changes, is held by the engine's index.
	wc := weak.Make(c)
	tx.OnCancel(func(*sip.Request) {
		if c := wc.Value(); c != nil {
			c.callerCancelled()
		}
	})
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

// allowMethods is what both legs are told we accept in a dialog.
const allowMethods = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK"

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
	close(c.endedCh)
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
	rec := state.CallRecord{Call: c.snapshot().Public(), Ended: now, EndReason: reason, Status: st}
	rec.State = state.CallEnded
	if !answered.IsZero() {
		rec.Duration = now.Sub(answered)
	}
	if c.recordsHere() && !recorded { // the node that handed the call over (or the cluster) records it
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
	full := c.st == state.CallAnswered
	bNode := c.bNode
	if bNode == "" {
		bNode = c.e.cfg.NodeID
	}
	sc := state.Call{ID: c.id, Room: c.room, Direction: c.dir, From: c.from, To: c.to, Source: c.source.String(),
		Node: c.e.cfg.NodeID, State: c.st, A: c.a.stateLeg(c.e.cfg.NodeID, full), B: c.b.stateLeg(bNode, full), Started: c.started,
		Answered: c.answered, AdoptedFrom: c.adoptedFrom, Far: c.far}
	if o := c.owned.Load(); o != nil {
		sc.ID, sc.Direction, sc.From, sc.To, sc.Source, sc.Started, sc.Answered = o.ID, o.Direction, o.From, o.To, o.Source, o.Started, o.Answered
	}
	return sc
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
