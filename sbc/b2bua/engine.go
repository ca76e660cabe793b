package b2bua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/media"
	"github.com/portcullis-sbc/portcullis/sbc/digest"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

// Config tunes the engine. Zero durations take the defaults named on each field.
type Config struct {
	Domain string // our SIP domain: rooms are sip:ROOM@Domain
	NodeID string
	// Contact returns our Contact URI on a transport (UDP, TCP, TLS).
	Contact func(transport string) sip.Uri
	// ContactFor, when set, is our Contact in answers to a peer at peer: the listener of the
	// peer's address family (an IPv6 caller must not be told an IPv4 Contact). Nil: Contact.
	ContactFor func(transport string, peer netip.AddrPort) sip.Uri
	// Local reports whether a request-URI host is this node (the domain or one of our addresses).
	Local func(host string) bool
	// Bindings returns where a room is reachable now (its registrations).
	Bindings func(room string) []state.Binding

	RingTimeout    time.Duration // unanswered calls end with 408 (default 60s)
	MaxDuration    time.Duration // calls are ended after it; 0 disables
	SessionExpires time.Duration // RFC 4028 interval on both legs; 0 disables session timers
	MinSE          time.Duration // smallest interval accepted (default 90s)
	TargetTimeout  time.Duration // outbound: next target when one does not answer at all (default 4s)
	RequireSDP     bool          // refuse INVITEs without an SDP offer with 488
	Follow3xx      bool          // outbound: follow redirects instead of failing
	UserAgent      string        // sent as User-Agent/Server when set
	PassUserAgent  bool          // relay the peers' User-Agent/Server
	Logger         *slog.Logger
	// CallStarted and CallEnded, when set, are told about every call this node bridges (for
	// metrics); they must not block.
	CallStarted func(dir state.Direction)
	CallEnded   func(rec state.CallRecord)
	// CallAdopted, when set, is told how each call this node adopted (from a lost node, or
	// handed over by a draining one) turned out: AdoptResumed or AdoptEnded. It must not block.
	CallAdopted func(result string)
	// MediaRefused, when set, is told about every call refused because the media relay would
	// not take its offer for a reason a caller controls (too many streams, too many ports held
	// by its unanswered calls), with the status sent; it must not block.
	MediaRefused func(src netip.AddrPort, transport string, code int, err error)
	// FlowNodeDown, when set, reports a cluster member that cannot take a call now (dead, or
	// cut off from this node): a room whose flows are all on such members gets 480 with
	// Retry-After at once (flownode.go). Nil: every member is asked.
	FlowNodeDown func(node string) bool
	// FlowNodeReached, when set, returns when this node last reached a cluster member (its
	// last answer to the cluster's pings). A call handed to the member that holds a room's
	// flow that says nothing at all, not even 100, for TrunkTimeout while the member has not
	// answered a ping for as long either, is given up on: the room's next flow, or 480 with
	// Retry-After (flownode.go). Nil: such a call waits for its transaction to time out.
	FlowNodeReached func(node string) time.Time
	// CatchUp, when set, returns once this node's state holds every write acknowledged before
	// the call (cluster.Node.Consistent): a call handed here for a room whose flow this node
	// does not hold yet waits for it (flownode.go). Nil: the state is taken as it is.
	CatchUp func(ctx context.Context) error
	// TrunkTimeout bounds the wait for the first answer of a member a call is handed to
	// (default 2s; the member answers 100 at once, and pings every second).
	TrunkTimeout time.Duration
}

// Decider is the caller-identity seam (*guard.Guard implements it): every inbound INVITE that
// did not come over the internal trunk passes it once, before any call state is made. r is the
// request as the edge of signalling described it for the guard; its Registered is set when the
// caller is a registered room's flow or a room that authenticated. The verdict says whether the
// call is made (Allow), answered (Reject: Code) or left unanswered (Drop); the policy says what
// the B2BUA must do to a call it makes (strip auto-answer headers, stay quiet).
type Decider interface {
	CheckCall(r *guard.Request, room state.Room, roomInCall bool) (guard.Verdict, guard.CallPolicy)
}

// Session is the media side of one call (media.Session implements it).
type Session interface {
	Offer(from media.Leg, body []byte, preferred netip.AddrPort) ([]byte, error)
	Answer(from media.Leg, body []byte, preferred netip.AddrPort) ([]byte, error)
	Close()
}

// MediaFactory creates a media session per call; onTimeout ends the call when media stops.
type MediaFactory interface {
	NewSession(id string, onTimeout func(reason string)) (Session, error)
}

// RoomLocker refuses logins for a room whose digest is locked after too many failed logins,
// except over its registered flows. An AuthObserver that implements it is asked before the
// credentials of a dialling room are checked (the guard does).
type RoomLocker interface {
	RoomLocked(room string, src netip.AddrPort, transport string) bool
}

// AuthObserver learns about digest outcomes of outbound calls (the guard counts failures).
type AuthObserver interface {
	AuthFailed(src netip.AddrPort, user, transport string)
	AuthSucceeded(src netip.AddrPort, user string)
}

// Deps are the engine's collaborators.
type Deps struct {
	Client   *sipgo.Client
	Store    state.Store
	Auth     *digest.Authenticator // challenges rooms that dial out
	Decider  Decider               // nil: every inbound call is allowed
	Media    MediaFactory          // nil: SDP passes unchanged
	Resolver Resolver              // outbound targets; nil: outbound calls are refused
	Observer AuthObserver          // nil: none
}

// Engine is the B2BUA.
type Engine struct {
	cfg  Config
	deps Deps
	log  *slog.Logger

	mu       sync.Mutex
	legs     map[string]*leg  // Call-ID + our tag -> leg, for requests the peers send us
	calls    map[string]*call // call ID -> call
	byRoom   map[string]int   // room -> active calls
	draining bool
	keepRoom func(room string) bool // while draining: trunk calls for these rooms are still taken (flownode.go)
	busy     inflight               // calls and BYEs in flight, for Drain
}

type leg struct {
	c *call
	d *dialog
}

// ErrNoCall is returned for an unknown call ID (it wraps state.ErrNotFound).
var ErrNoCall = fmt.Errorf("b2bua: no such call: %w", state.ErrNotFound)

// New returns an engine.
func New(cfg Config, deps Deps) (*Engine, error) {
	if deps.Client == nil || deps.Store == nil || cfg.Contact == nil || cfg.Local == nil || cfg.Bindings == nil {
		return nil, fmt.Errorf("b2bua: client, store, Contact, Local and Bindings are required")
	}
	if cfg.Domain == "" {
		return nil, fmt.Errorf("b2bua: domain is required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.RingTimeout, 60*time.Second)
	def(&cfg.MinSE, 90*time.Second)
	def(&cfg.TargetTimeout, 4*time.Second)
	def(&cfg.TrunkTimeout, 2*time.Second)
	if cfg.SessionExpires > 0 && cfg.SessionExpires < cfg.MinSE {
		cfg.SessionExpires = cfg.MinSE
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Engine{cfg: cfg, deps: deps, log: cfg.Logger.With("component", "b2bua"),
		legs: map[string]*leg{}, calls: map[string]*call{}, byRoom: map[string]int{}}, nil
}

// HandleInvite serves every INVITE of a server with no guard in front: re-INVITEs of known
// dialogs and new calls (described for the Decider here). A node serves new calls through
// HandleNewCall and HandleTrunkCall instead, with what its edge found out.
func (e *Engine) HandleInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		e.HandleInDialog(req, tx)
		return
	}
	e.newCall(req, tx, origin{})
}

// HandleNewCall serves an INVITE that creates a dialog, as the edge of signalling admitted it:
// gr is the request as the guard checked it (nil: described here when the Decider needs it).
// It returns after the final answer (sipgo ends the transaction when the handler returns).
func (e *Engine) HandleNewCall(req *sip.Request, tx sip.ServerTransaction, gr *guard.Request) {
	e.newCall(req, tx, origin{guard: gr})
}

// HandleTrunkCall serves an INVITE another node of the cluster hands over for a room
// registered here (internal SIP trunk), whose TrunkHeader the edge verified (VerifyTrunk):
// node signed it. That node filtered the caller and keeps the call's records; the call goes to
// this node's flows of the room only.
func (e *Engine) HandleTrunkCall(req *sip.Request, tx sip.ServerTransaction, node string) {
	e.newCall(req, tx, origin{trunk: node})
}

// HandleInDialog serves requests inside a dialog: ACK, BYE, re-INVITE, UPDATE, INFO, PRACK,
// OPTIONS, and CANCELs that match no transaction.
func (e *Engine) HandleInDialog(req *sip.Request, tx sip.ServerTransaction) {
	l := e.lookup(req)
	if l == nil {
		if req.IsAck() {
			return
		}
		respond(tx, sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		return
	}
	l.c.inDialog(l.d, req, tx)
}

func (e *Engine) lookup(req *sip.Request) *leg {
	cid, to := req.CallID(), req.To()
	if cid == nil || to == nil {
		return nil
	}
	tag, _ := to.Params.Get("tag")
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.legs[string(*cid)+"\x00"+tag]
}

func (e *Engine) index(c *call, d *dialog) {
	e.mu.Lock()
	e.legs[d.key()] = &leg{c: c, d: d}
	e.mu.Unlock()
}

// register adds a call to the table; false when draining.
func (e *Engine) register(c *call) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.draining && !(c.fromTrunk && c.dir == state.Inbound && e.keepRoom != nil && e.keepRoom(c.room)) {
		return false
	}
	e.calls[c.id] = c
	if c.room != "" {
		e.byRoom[c.room]++
	}
	e.busy.add()
	if e.cfg.CallStarted != nil && !c.fromTrunk && c.adoptedFrom == "" { // an adopted call started elsewhere
		e.cfg.CallStarted(c.dir)
	}
	return true
}

func (e *Engine) unregister(c *call) {
	e.mu.Lock()
	defer e.mu.Unlock()
	id := c.tableID()
	if _, ok := e.calls[id]; !ok {
		return
	}
	delete(e.calls, id)
	for _, d := range []*dialog{c.a, c.b} {
		if d != nil {
			delete(e.legs, d.key())
		}
	}
	if c.room != "" {
		if e.byRoom[c.room]--; e.byRoom[c.room] <= 0 {
			delete(e.byRoom, c.room)
		}
	}
	e.busy.done()
}

// roomBusy reports whether a room has an active call on this node or, in a cluster, on another.
func (e *Engine) roomBusy(room string) bool {
	e.mu.Lock()
	n := e.byRoom[room]
	e.mu.Unlock()
	return n > 0 || e.deps.Store.State().RoomInCall(room, e.cfg.NodeID)
}

// Calls returns the active calls of this node, ringing and answered.
func (e *Engine) Calls() []state.Call {
	e.mu.Lock()
	cs := make([]*call, 0, len(e.calls))
	for _, c := range e.calls {
		cs = append(cs, c)
	}
	e.mu.Unlock()
	out := make([]state.Call, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.snapshot())
	}
	return out
}

// Active returns how many calls this node is bridging.
func (e *Engine) Active() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.calls)
}

// MediaStats returns a call's media session, if any, for per-stream statistics.
func (e *Engine) MediaStats(id string) (any, bool) {
	e.mu.Lock()
	c := e.calls[id]
	e.mu.Unlock()
	if c == nil {
		return nil, false
	}
	type streamer interface{ Streams() []media.StreamStats }
	if s, ok := c.mediaSession().(streamer); ok {
		return s.Streams(), true
	}
	return nil, true
}

// Hangup ends a call on both legs (admin action).
func (e *Engine) Hangup(ctx context.Context, id string) error {
	e.mu.Lock()
	c := e.calls[id]
	e.mu.Unlock()
	if c == nil {
		return ErrNoCall
	}
	c.hangup("ended by admin", 0)
	return nil
}

// Drain refuses new calls (503) and waits for the active ones to end until ctx is done; the
// calls still up then are hung up.
func (e *Engine) Drain(ctx context.Context) {
	e.mu.Lock()
	e.draining, e.keepRoom = true, nil
	e.mu.Unlock()
	done := e.busy.idle()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	e.mu.Lock()
	cs := make([]*call, 0, len(e.calls))
	for _, c := range e.calls {
		cs = append(cs, c)
	}
	e.mu.Unlock()
	for _, c := range cs {
		c.hangup("node shutting down", 0)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

// noteMedia logs a media session that could not be made. Running out of relay ports is
// logged by the media manager, once per episode, not once per refused call.
func (e *Engine) noteMedia(err error) {
	if err != nil && !errors.Is(err, media.ErrPoolExhausted) {
		e.log.Warn("no media session", "error", err)
	}
}

func respond(tx sip.ServerTransaction, res *sip.Response) {
	_ = tx.Respond(res)
}

func sourceAddr(req *sip.Request) netip.AddrPort {
	ap, _ := netip.ParseAddrPort(req.Source())
	return ap
}

// contactFor is our Contact in an answer to the peer at peer.
func (e *Engine) contactFor(transport string, peer netip.AddrPort) sip.Uri {
	if e.cfg.ContactFor != nil && peer.IsValid() {
		return e.cfg.ContactFor(transport, peer)
	}
	return e.cfg.Contact(transport)
}
