package registrar

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/siphost"
	"github.com/portcullis-sbc/portcullis/sbc/digest"
)

// Config configures a Registrar; zero fields take the documented defaults.
type Config struct {
	Domain string
	NodeID string
	// Trunk is the ip:port where other cluster nodes reach this node to hand it calls for its
	// bindings (recorded as Binding.Local).
	Trunk string
	// Host is this node's host in the From of its keepalives (sip:HOST, no user part: nothing
	// that names the product). Default: Domain.
	Host              string
	MinExpires        time.Duration // default 60s
	MaxExpires        time.Duration // default 3600s
	DefaultExpires    time.Duration // default 600s
	KeepaliveInterval time.Duration // default 25s (UDP OPTIONS pings)
	KeepaliveFailures int           // default 2
	Grace             time.Duration // default 30s: a closed TCP/TLS flow's bindings live this long
	MaxContacts       int           // default 4
	// ChallengeTimeout: a configured room that got a 401 and sent no credentials from that
	// source within it is reported to OnFailure (FailNoAnswer). Default 32s (64*T1).
	ChallengeTimeout time.Duration
	// OnFailure is told about every registration of a configured room that failed (wrong
	// password, unsupported algorithm, challenge not answered, ...). It must be quick. Nil: none.
	OnFailure func(Failure)
	Logger    *slog.Logger
	Now       func() time.Time

	// Draining, when set, reports that this node drains: a room that registers meanwhile is
	// granted MinExpires, so it comes back soon (to another node, once this one is gone).
	Draining func() bool
}

// AuthObserver learns about authentication outcomes (the guard implements it).
type AuthObserver interface {
	AuthFailed(src netip.AddrPort, user, transport string)
	AuthSucceeded(src netip.AddrPort, user string)
}

// RoomLocker refuses logins for a room whose digest is locked after too many failed logins
// from anywhere, except over the room's registered flows (the guard implements it). An
// AuthObserver that also implements it is asked before any credentials are checked.
type RoomLocker interface {
	RoomLocked(room string, src netip.AddrPort, transport string) bool
}

// Registrar handles REGISTER and keeps bindings alive.
type Registrar struct {
	cfg    Config
	store  state.Store
	auth   *digest.Authenticator
	client *sipgo.Client
	obs    AuthObserver
	log    *slog.Logger

	mu       sync.Mutex
	failures map[string]int // binding key -> keepalive failures
	closed   map[string]time.Time
	pending  map[pendingKey]pendingChallenge // 401s awaiting credentials
}

// New returns a Registrar.
func New(cfg Config, store state.Store, auth *digest.Authenticator, client *sipgo.Client, obs AuthObserver) (*Registrar, error) {
	if store == nil || auth == nil {
		return nil, fmt.Errorf("%w: store and authenticator are required", ErrConfig)
	}
	if cfg.Domain == "" {
		return nil, fmt.Errorf("%w: domain is required", ErrConfig)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.MinExpires, 60*time.Second)
	def(&cfg.MaxExpires, 3600*time.Second)
	def(&cfg.DefaultExpires, 600*time.Second)
	def(&cfg.KeepaliveInterval, 25*time.Second)
	def(&cfg.Grace, 30*time.Second)
	def(&cfg.ChallengeTimeout, 32*time.Second)
	if cfg.KeepaliveFailures <= 0 {
		cfg.KeepaliveFailures = 2
	}
	if cfg.MaxContacts <= 0 {
		cfg.MaxContacts = 4
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Host == "" {
		cfg.Host = cfg.Domain
	}
	return &Registrar{cfg: cfg, store: store, auth: auth, client: client, obs: obs,
		log: cfg.Logger.With("component", "registrar"), failures: map[string]int{}, closed: map[string]time.Time{},
		pending: map[pendingKey]pendingChallenge{}}, nil
}

// Bindings returns the room's current bindings.
func (r *Registrar) Bindings(room string) []state.Binding {
	return r.store.State().Bindings(room, r.cfg.Now())
}

// Route returns where to send a request to b so it goes back over the registered flow:
// req.SetDestination(destination); req.SetTransport(transport).
func Route(b state.Binding) (destination, transport string) {
	return b.Source, strings.ToUpper(b.Transport)
}

func respond(tx sip.ServerTransaction, req *sip.Request, code int, reason string, hdrs ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	_ = tx.Respond(res)
}

// HandleRegister answers a REGISTER; it returns after sending the final response.
func (r *Registrar) HandleRegister(req *sip.Request, tx sip.ServerTransaction) {
	src, _ := netip.ParseAddrPort(req.Source())
	to := req.To()
	cseq := req.CSeq()
	callID := req.CallID()
	if to == nil || cseq == nil || callID == nil || to.Address.User == "" {
		respond(tx, req, 400, "Bad Request")
		return
	}
	room := to.Address.User
	if !strings.EqualFold(to.Address.Host, r.cfg.Domain) && !siphost.IsIP(to.Address.Host) {
		respond(tx, req, 404, "Not Found")
		return
	}
	hv := ""
	if h := req.GetHeader("Authorization"); h != nil {
		hv = h.Value()
		r.answered(room, src)
	}
	if l, ok := r.obs.(RoomLocker); ok && hv != "" && l.RoomLocked(room, src, req.Transport()) {
		respond(tx, req, 403, "Forbidden") // not checked: a right guess must not tell
		return
	}
	user, res := r.auth.Verify(req.Method.String(), req.Recipient.String(), hv, func(u string) (string, string, bool) {
		rm, ok := r.store.State().Room(u)
		return rm.HA1MD5, rm.HA1SHA256, ok
	})
	if res == digest.OK && user != room {
		res = digest.BadCredentials // authenticated as another room
	}
	switch res {
	case digest.OK:
	case digest.Missing, digest.Stale:
		hdrs := []sip.Header{}
		for _, c := range r.auth.Challenge(res == digest.Stale) {
			hdrs = append(hdrs, sip.NewHeader("WWW-Authenticate", c))
		}
		r.challenged(room, src, req.Transport(), userAgent(req)) // before the answer: the retry may be quick
		respond(tx, req, 401, "Unauthorized", hdrs...)
		return
	default:
		if r.obs != nil && res != digest.Unsupported { // not a password guess
			r.obs.AuthFailed(src, room, req.Transport())
		}
		r.failed(room, src, req.Transport(), userAgent(req), res, algorithmOf(hv))
		respond(tx, req, 403, "Forbidden")
		return
	}
	if r.obs != nil {
		r.obs.AuthSucceeded(src, room)
	}
	r.register(req, tx, room)
}

// algorithmOf is the algorithm named in an Authorization value ("" when none or unparsable).
func algorithmOf(hv string) string {
	c, err := digest.Parse(hv)
	if err != nil {
		return ""
	}
	return c.Algorithm
}

func (r *Registrar) register(req *sip.Request, tx sip.ServerTransaction, room string) {
	defExp, ok := requestExpires(req, r.cfg.DefaultExpires)
	if !ok {
		respond(tx, req, 400, "Bad Request")
		return
	}
	contacts := contactsOf(req)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if wildcard(contacts) {
		r.removeAll(ctx, req, tx, room, len(contacts), defExp)
		return
	}
	ch, refusal := r.changes(req, room, contacts, defExp)
	if refusal != nil {
		respond(tx, req, refusal.code, refusal.reason, refusal.headers...)
		return
	}
	for _, d := range ch.dels {
		if err := r.store.Propose(ctx, state.DeleteBinding(room, d)); err != nil {
			respond(tx, req, 500, "Server Internal Error")
			return
		}
	}
	for _, p := range ch.puts {
		if err := r.store.Propose(ctx, state.PutBinding(p)); err != nil {
			respond(tx, req, 500, "Server Internal Error")
			return
		}
	}
	r.ok(req, tx, room, ch.outbound)
}

// requestExpires is the REGISTER's Expires header (the default of its Contacts), or def
// without one; ok is false for a malformed value.
func requestExpires(req *sip.Request, def time.Duration) (exp time.Duration, ok bool) {
	h := req.GetHeader("Expires")
	if h == nil {
		return def, true
	}
	n, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
	if err != nil {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// contactsOf lists the request's Contact headers.
func contactsOf(req *sip.Request) []*sip.ContactHeader {
	var contacts []*sip.ContactHeader
	for _, h := range req.GetHeaders("Contact") {
		if c, ok := h.(*sip.ContactHeader); ok {
			contacts = append(contacts, c)
		}
	}
	return contacts
}

// wildcard reports whether one of the Contacts is "*".
func wildcard(contacts []*sip.ContactHeader) bool {
	for _, c := range contacts {
		if c.Address.Wildcard {
			return true
		}
	}
	return false
}

// removeAll answers "Contact: *": valid only alone and with Expires: 0 (RFC 3261 10.3 step 6).
func (r *Registrar) removeAll(ctx context.Context, req *sip.Request, tx sip.ServerTransaction, room string, contacts int, exp time.Duration) {
	if contacts != 1 || exp != 0 {
		respond(tx, req, 400, "Bad Request")
		return
	}
	if err := r.store.Propose(ctx, state.DeleteRoomBindings(room)); err != nil {
		respond(tx, req, 500, "Server Internal Error")
		return
	}
	r.ok(req, tx, room, false)
}

// refusal is a REGISTER answered with an error status.
type refusal struct {
	code    int
	reason  string
	headers []sip.Header
}

var badRequest = &refusal{code: 400, reason: "Bad Request"}

// bindingChanges are the writes a REGISTER asks for.
type bindingChanges struct {
	puts     []state.Binding
	dels     []string // binding keys
	outbound bool     // an RFC 5626 flow was registered: the 200 says Require: outbound
}

// changes turns the REGISTER's Contacts into binding writes (RFC 3261 10.3 steps 7-8), or the
// refusal that answers it.
func (r *Registrar) changes(req *sip.Request, room string, contacts []*sip.ContactHeader, defExp time.Duration) (bindingChanges, *refusal) {
	now := r.cfg.Now()
	current := map[string]state.Binding{}
	for _, b := range r.Bindings(room) {
		current[b.Key()] = b
	}
	var ch bindingChanges
	for _, c := range contacts {
		b, exp, ref := r.bindingOf(req, room, c, defExp)
		if ref != nil {
			return ch, ref
		}
		ch.outbound = ch.outbound || b.RegID > 0
		key := b.Key()
		if old, ok := current[key]; ok && old.CallID == b.CallID && b.CSeq <= old.CSeq {
			continue // RFC 3261 10.3: an older request for this binding
		}
		if exp == 0 {
			ch.dels = append(ch.dels, key)
			continue
		}
		if exp < r.cfg.MinExpires {
			return ch, &refusal{423, "Interval Too Brief", []sip.Header{sip.NewHeader("Min-Expires", strconv.Itoa(int(r.cfg.MinExpires/time.Second)))}}
		}
		exp = min(exp, r.cfg.MaxExpires)
		if r.cfg.Draining != nil && r.cfg.Draining() {
			exp = r.cfg.MinExpires
		}
		b.Updated, b.Expires = now, now.Add(exp)
		ch.puts = append(ch.puts, b)
	}
	n := len(current)
	for _, p := range ch.puts {
		if _, ok := current[p.Key()]; !ok {
			n++
		}
	}
	if n-len(ch.dels) > r.cfg.MaxContacts {
		return ch, &refusal{code: 403, reason: "Too Many Contacts"}
	}
	return ch, nil
}

// bindingOf reads one Contact into the binding it asks for (times not yet set) and the
// expiry it asks (its expires parameter, else the request's).
func (r *Registrar) bindingOf(req *sip.Request, room string, c *sip.ContactHeader, defExp time.Duration) (state.Binding, time.Duration, *refusal) {
	if c.Address.Host == "" {
		return state.Binding{}, 0, badRequest
	}
	exp := defExp
	if v, ok := c.Params.Get("expires"); ok {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return state.Binding{}, 0, badRequest
		}
		exp = time.Duration(n) * time.Second
	}
	instance, regID, err := flowOf(c)
	if err != nil {
		return state.Binding{}, 0, badRequest
	}
	// Local is this node's trunk address: other nodes of a cluster hand calls for the room to
	// it there (sipgo does not record the listener an incoming request arrived on).
	return state.Binding{Room: room, Contact: c.Address.String(), Source: req.Source(), Transport: strings.ToUpper(req.Transport()),
		Local: r.cfg.Trunk, Node: r.cfg.NodeID, CallID: req.CallID().Value(), CSeq: req.CSeq().SeqNo,
		UserAgent: userAgent(req), Instance: instance, RegID: regID}, exp, nil
}

// flowOf reads a Contact's RFC 5626 flow: its +sip.instance (quotes removed) and reg-id. A
// reg-id without an instance is ignored (RFC 5626 section 6); one that is not a number in
// 1..2^31-1 is an error.
func flowOf(c *sip.ContactHeader) (instance string, regID int, err error) {
	instance, _ = c.Params.Get("+sip.instance")
	instance = strings.Trim(instance, `"`)
	if instance == "" {
		return "", 0, nil
	}
	if v, ok := c.Params.Get("reg-id"); ok {
		n, perr := strconv.ParseUint(v, 10, 31)
		if perr != nil || n == 0 {
			return "", 0, fmt.Errorf("%w: reg-id %q", ErrBadContact, v)
		}
		regID = int(n)
	}
	return instance, regID, nil
}

func userAgent(req *sip.Request) string {
	if h := req.GetHeader("User-Agent"); h != nil {
		return h.Value()
	}
	return ""
}

// ok answers 200 listing all current contacts with their remaining expiry (and flow, RFC 5626).
func (r *Registrar) ok(req *sip.Request, tx sip.ServerTransaction, room string, outbound bool) {
	now := r.cfg.Now()
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	for _, b := range r.Bindings(room) {
		secs := int(b.Expires.Sub(now).Round(time.Second) / time.Second)
		v := "<" + b.Contact + ">;expires=" + strconv.Itoa(secs)
		if b.Instance != "" {
			v += `;+sip.instance="` + b.Instance + `"`
		}
		if b.RegID > 0 {
			v += ";reg-id=" + strconv.Itoa(b.RegID)
		}
		res.AppendHeader(sip.NewHeader("Contact", v))
	}
	if outbound {
		res.AppendHeader(sip.NewHeader("Require", "outbound"))
	}
	res.AppendHeader(sip.NewHeader("Date", now.UTC().Format(time.RFC1123)))
	_ = tx.Respond(res)
}

// FlowClosed drops, after Grace, the bindings on a closed TCP/TLS flow owned by this node.
func (r *Registrar) FlowClosed(transport string, remote netip.AddrPort) {
	r.mu.Lock()
	r.closed[strings.ToUpper(transport)+"|"+remote.String()] = r.cfg.Now().Add(r.cfg.Grace)
	r.mu.Unlock()
}

// Run sweeps expired bindings and closed flows and pings UDP bindings until ctx is done.
func (r *Registrar) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.KeepaliveInterval)
	defer t.Stop()
	ct := time.NewTicker(max(r.cfg.ChallengeTimeout/4, 50*time.Millisecond))
	defer ct.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.Tick(ctx)
		case <-ct.C:
			r.SweepChallenges()
		}
	}
}

// Tick runs one round of sweeps and keepalives (Run calls it every KeepaliveInterval).
func (r *Registrar) Tick(ctx context.Context) {
	now := r.cfg.Now()
	st := r.store.State()
	// expired bindings (state hides them; delete them for good)
	for _, rm := range st.Rooms() {
		for _, b := range st.Bindings(rm.Name, time.Time{}) {
			if !b.Expires.After(now) && b.Node == r.cfg.NodeID {
				_ = r.store.Propose(ctx, state.DeleteBinding(b.Room, b.Key()))
			}
		}
	}
	r.mu.Lock()
	closed := map[string]bool{}
	for k, at := range r.closed {
		if !now.Before(at) {
			closed[k] = true
			delete(r.closed, k)
		}
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, b := range st.AllBindings(now) {
		if b.Node != r.cfg.NodeID {
			continue
		}
		if closed[b.Transport+"|"+b.Source] {
			_ = r.store.Propose(ctx, state.DeleteBinding(b.Room, b.Key()))
			continue
		}
		if b.Transport == "UDP" && r.client != nil {
			wg.Add(1)
			go func(b state.Binding) {
				defer wg.Done()
				r.ping(ctx, b)
			}(b)
		}
	}
	wg.Wait()
}

func (r *Registrar) ping(ctx context.Context, b state.Binding) {
	key := b.Room + "|" + b.Key()
	var to sip.Uri
	if err := sip.ParseUri(b.Contact, &to); err != nil {
		return
	}
	req := sip.NewRequest(sip.OPTIONS, to)
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", Host: r.cfg.Host}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(from)
	dst, tr := Route(b)
	req.SetDestination(dst)
	req.SetTransport(tr)
	cctx, cancel := context.WithTimeout(ctx, min(4*time.Second, r.cfg.KeepaliveInterval))
	defer cancel()
	_, err := r.client.Do(cctx, req)
	r.mu.Lock()
	if err == nil {
		delete(r.failures, key)
		r.mu.Unlock()
		return
	}
	r.failures[key]++
	drop := r.failures[key] >= r.cfg.KeepaliveFailures
	if drop {
		delete(r.failures, key)
	}
	r.mu.Unlock()
	if drop {
		r.log.Info("keepalive failed; dropping binding", "room", b.Room, "source", b.Source)
		_ = r.store.Propose(ctx, state.DeleteBinding(b.Room, b.Key()))
	}
}
