package guard

import (
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go4.org/netipx"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/siphost"
)

// Guard is the decision engine. All methods are safe for concurrent use.
type Guard struct {
	cfg   Config
	store state.Store
	log   *slog.Logger

	cfgAllow, cfgDeny []string // config entries, merged with the cluster's lists
	lists             atomic.Pointer[lists]
	listsMu           sync.Mutex

	bans      atomic.Pointer[banSet]
	bansDirty atomic.Bool
	banBuild  sync.Mutex
	banCost   atomic.Int64 // how long the last ban set build took (ns)
	banBuilt  atomic.Int64 // when it ended (ns on the monotonic clock)
	liftEpoch atomic.Uint64
	banMu     sync.Mutex
	strikes   map[netip.Prefix]strike

	feeds     atomic.Pointer[netipx.IPSet]
	feedMu    sync.Mutex
	feedLists map[int][]netip.Prefix

	table  *sourceTable
	events *eventLog
	logs   logLimiter
	rooms  roomCache
	sites  sites
	media  mediaStrikes
	seed   maphash.Seed

	roomLocks roomLocks

	// Room names for Check, read without a lock on every request: roomNames is a copy of the
	// state's, current while roomsBuilt == roomsChanged. A room change only bumps roomsChanged:
	// rebuilding the copy on each would cost O(rooms) per change, O(rooms²) while a node writes
	// its config's rooms or replays its log (4,000 rooms: 3.6 s of CPU before the node was
	// ready). Until Run rebuilds it (within a second) lookups go to the state itself.
	roomNames    atomic.Pointer[map[string]struct{}]
	roomsChanged atomic.Uint64
	roomsBuilt   atomic.Uint64

	hosts       *siphost.Set // our domain, aliases and addresses
	rate, burst float64
	running     atomic.Bool
	unobserve   func() // stops following the state (Close)
}

// Request is what the node extracts from a parsed, out-of-dialog SIP request. Strings are as
// parsed (no brackets needed around IPv6 hosts; they are accepted).
type Request struct {
	Source    netip.AddrPort // where the request really came from
	Transport string         // UDP, TCP, TLS
	Method    string
	RURIUser  string
	RURIHost  string
	FromName  string // From display name (scanners sign it too)
	FromUser  string
	FromHost  string
	ToUser    string
	ToHost    string
	UserAgent string
	CallID    string
	// MaxForwards is the Max-Forwards value; -1 when the header is absent.
	MaxForwards int
	// Registered is true when the source is the flow of a registered room.
	Registered bool
}

type lists struct {
	allow, deny *Matcher
	scanner     *uaMatcher
}

// monoStart anchors a monotonic clock for throttling (independent of Config.Now).
var monoStart = time.Now()

func mono() int64 { return int64(time.Since(monoStart)) }

// New returns a Guard over store. The config's lists must be valid; the cluster's lists
// (store.State().Lists()) are merged in and followed as they change.
func New(cfg Config, store state.Store) (*Guard, error) {
	if store == nil {
		return nil, fmt.Errorf("%w: store is required", ErrConfig)
	}
	scannersNil := cfg.ScannerUserAgents == nil
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if _, err := CompilePatterns(cfg.Allow); err != nil {
		return nil, fmt.Errorf("guard allow list: %w", err)
	}
	if _, err := CompilePatterns(cfg.Deny); err != nil {
		return nil, fmt.Errorf("guard deny list: %w", err)
	}
	if !scannersNil {
		if _, err := compileUA(cfg.ScannerUserAgents); err != nil {
			return nil, fmt.Errorf("guard scanner user agents: %w", err)
		}
	}
	g := &Guard{
		cfg:       cfg,
		store:     store,
		log:       cfg.Logger,
		strikes:   map[netip.Prefix]strike{},
		feedLists: map[int][]netip.Prefix{},
		table:     newSourceTable(cfg.MaxSources),
		events:    newEventLog(cfg.Events),
		seed:      maphash.MakeSeed(),
		rate:      cfg.RequestRate,
		burst:     float64(cfg.RequestBurst),
	}
	g.hosts = siphost.NewSet(append([]string{cfg.Domain}, cfg.Aliases...), cfg.NodeAddrs)
	g.cfg.NodeAddrs = g.hosts.Addrs()
	g.feeds.Store(&netipx.IPSet{})
	// Follow the state before reading it: a node joining a cluster is still applying the log,
	// and a room applied between the read and the start of following would be missed for good.
	// (A change seen by both only rebuilds twice.)
	g.unobserve = store.State().Observe(g.observe)
	g.rebuildLists()
	g.rebuildRooms()
	g.rememberSites()
	g.refreshBans(cfg.Now().UnixNano())
	return g, nil
}

// Close stops the guard from following the cluster state, so that a guard replaced on a config
// reload can be garbage collected. Stop Run (cancel its context) first. The guard still answers
// afterwards, with the lists, rooms and bans it last saw.
func (g *Guard) Close() { g.unobserve() }

// observe follows the cluster state: lists are recompiled at once, bans are marked for a rebuild.
func (g *Guard) observe(c state.Command) {
	switch c.Type {
	case state.CmdSetLists:
		g.rebuildLists()
	case state.CmdPutBan, state.CmdExpire:
		g.bansDirty.Store(true)
	case state.CmdLiftBan:
		g.lifted(c)
		g.bansDirty.Store(true)
	case state.CmdPutRoom, state.CmdDeleteRoom:
		g.roomsChanged.Add(1)
	case state.CmdPutBinding:
		g.bindingPut(c)
	case state.CmdRestored:
		g.rebuildLists()
		g.rebuildRooms()
		g.rememberSites()
		g.bansDirty.Store(true)
	}
}

// rebuildRooms refreshes the lock-free copy of the room names (Check looks rooms up on every
// request; the state's RWMutex would be a point of contention across cores).
func (g *Guard) rebuildRooms() {
	g.listsMu.Lock()
	defer g.listsMu.Unlock()
	seen := g.roomsChanged.Load() // before reading: a change after it leaves the copy stale
	names := g.store.State().RoomNames()
	m := make(map[string]struct{}, len(names))
	for _, name := range names {
		m[name] = struct{}{}
	}
	g.roomNames.Store(&m)
	g.roomsBuilt.Store(seen)
}

// rebuildLists compiles config and cluster lists into a new snapshot.
func (g *Guard) rebuildLists() {
	g.listsMu.Lock()
	defer g.listsMu.Unlock()
	sl := g.store.State().Lists()
	allow, err := CompilePatterns(append(append([]string(nil), g.cfg.Allow...), sl.Allow...))
	if err != nil {
		g.log.Warn("guard: cluster allow list has bad entries; they are ignored", "error", err)
	}
	deny, err := CompilePatterns(append(append([]string(nil), g.cfg.Deny...), sl.Deny...))
	if err != nil {
		g.log.Warn("guard: cluster deny list has bad entries; they are ignored", "error", err)
	}
	scanner, err := compileUA(append(append([]string(nil), g.cfg.ScannerUserAgents...), sl.ScannerUserAgents...))
	if err != nil {
		g.log.Warn("guard: scanner user agents have bad entries; they are ignored", "error", err)
	}
	old := g.lists.Swap(&lists{allow: allow, deny: deny, scanner: scanner})
	// The allow list is subtracted from FeedPrefixes: tell the owner it changed.
	if old != nil && g.cfg.OnFeedsChanged != nil && g.haveFeeds() {
		g.cfg.OnFeedsChanged()
	}
}

// Check decides on an out-of-dialog request before the node acts on it. In order: registered
// rooms' flows and allow-listed sources pass; then source deny list, threat feeds, bans,
// scanner User-Agents (ban), the per-source rate limit (ban when it goes on), Max-Forwards,
// From/To/R-URI sanity, caller deny list, and for INVITE the target: R-URI host an IP literal
// (ghost call, or relay when not ours), a domain that is not ours (relay), a user that is no
// room (unknown user; a numeric one is a ghost call). Unknown users of INVITE, REGISTER (To)
// and other requests are counted per source: UnknownUsers different ones in UnknownWindow ban
// it (enumeration). An allowed request from a known source does not allocate.
func (g *Guard) Check(r *Request) Verdict {
	if r.Registered {
		return Verdict{}
	}
	nowT := g.cfg.Now()
	src := r.Source.Addr().Unmap().WithZone("")
	if !src.IsValid() {
		return g.refuse(r, "", ridMalformed, Reject, 400, "no source address", nowT)
	}
	l := g.lists.Load()
	if l.allow.MatchSource(src) {
		return Verdict{}
	}
	if l.deny.MatchSource(src) {
		return g.refuseScan(r, ridDenyList, 403, "source "+src.String()+" is on the deny list", nowT)
	}
	if g.feeds.Load().Contains(src) {
		return g.refuseScan(r, ridThreatFeed, 403, "source "+src.String()+" is listed by a threat feed", nowT)
	}
	if v, refused := g.sourceCheck(r, src, l, nowT, false); refused {
		return v
	}

	if r.MaxForwards == 0 && r.Method != "OPTIONS" {
		return g.refuse(r, "", ridMaxForwards, Reject, 483, "Max-Forwards is 0 (a loop, or a scanner)", nowT)
	}
	if r.MaxForwards > 255 || r.MaxForwards < -1 {
		return g.refuse(r, "", ridMaxForwards, Reject, 400, fmt.Sprintf("Max-Forwards %d is out of range", r.MaxForwards), nowT)
	}
	if why := insane(r); why != "" {
		return g.refuse(r, "", ridMalformed, Reject, 400, why, nowT)
	}
	if l.deny.MatchCaller(r.FromUser, r.FromHost) && !l.allow.MatchCaller(r.FromUser, r.FromHost) {
		return g.refuseScan(r, ridDenyList, 403, "caller "+uri(r.FromUser, r.FromHost)+" is on the deny list", nowT)
	}
	return g.checkTarget(r, src, nowT)
}

// maxSiteRooms caps how many rooms registered from one address or /64 raise its request budget.
const maxSiteRooms = 10_000

// sourceCheck applies what the guard knows of the source itself: cluster and local bans,
// scanner signatures (ban), and the per-source rate limit (ban when it goes on). silent makes
// every refusal a drop (nothing can be answered to a datagram that is not SIP).
func (g *Guard) sourceCheck(r *Request, src netip.Addr, l *lists, nowT time.Time, silent bool) (Verdict, bool) {
	now := nowT.UnixNano()
	if g.storeBanned(src, now) {
		return g.refuseSource(r, silent, ridBanned, "source "+banPrefix(src).String()+" is banned", nowT), true
	}
	// A site's budget grows with the rooms registered from it: after an outage its rooms all
	// come back at once from new ports, and that must not look like a flood (nor ban it).
	rate, burst := scaled(g.rate, g.burst, g.siteRooms(src, nowT), maxSiteRooms)
	k := sourceKey(src)
	sh := g.table.shard(k)
	sh.mu.Lock()
	s := sh.get(k, g.table.perShard)
	s.seen = now
	if s.banUntil > now && s.banEpoch == g.liftEpoch.Load() {
		until := s.banUntil
		sh.mu.Unlock()
		return g.refuseSource(r, silent, ridBanned, fmt.Sprintf("source %s is banned until %s", banPrefix(src),
			time.Unix(0, until).UTC().Format(time.RFC3339)), nowT), true
	}
	if pat, ok := l.scanner.match(r.UserAgent); ok || r.FromName != "" {
		field := "User-Agent"
		if !ok {
			pat, ok = l.scanner.match(r.FromName)
			field = "From display name"
		}
		if ok {
			sh.mu.Unlock()
			why := fmt.Sprintf("%s contains scanner signature %q", field, pat)
			return g.refuseSource(r, silent, ridScanner, g.banFor(src, ridScanner, why, nowT), nowT), true
		}
	}
	if !s.requests.take(now, rate, burst) {
		// A source in the shared overflow entry (table full) is not banned for what others spent.
		flood := s != sh.overflow && s.flooded(now, g.cfg.FloodRefusals, g.cfg.FloodWindow)
		sh.mu.Unlock()
		if flood {
			why := fmt.Sprintf("%d requests over the rate limit within %s", g.cfg.FloodRefusals, g.cfg.FloodWindow)
			return g.refuseSource(r, silent, ridFlood, g.banFor(src, ridFlood, why, nowT), nowT), true
		}
		return g.refuseSource(r, silent, ridRateLimit, fmt.Sprintf("more than %g requests/s (burst %g)", rate, burst), nowT), true
	}
	sh.mu.Unlock()
	return Verdict{}, false
}

// refuseSource refuses for a rule about the source: 403, or a drop when silent or stealthy.
func (g *Guard) refuseSource(r *Request, silent bool, rule ruleID, reason string, now time.Time) Verdict {
	if silent {
		return g.refuse(r, "", rule, Drop, 0, reason, now)
	}
	return g.refuseScan(r, rule, 403, reason, now)
}

// NotSIP records a datagram the edge dropped before parsing because it is not SIP (a port
// scanner's probe, another protocol, garbage) and returns the verdict on its source. From a
// registered flow or an allow-listed source it is only dropped. From anyone else it counts
// against the source's request rate like a request (a flood of them bans the source, and the
// edge then drops its packets before looking at them) and leaves an event of rule "malformed"
// with the datagram's first bytes, so that admins see what hits the SIP port.
func (g *Guard) NotSIP(r *Request, head []byte) Verdict {
	src := r.Source.Addr().Unmap().WithZone("")
	if r.Registered || !src.IsValid() {
		return Verdict{Action: Drop}
	}
	nowT := g.cfg.Now()
	l := g.lists.Load()
	if l.allow.MatchSource(src) {
		return Verdict{Action: Drop}
	}
	if v, refused := g.sourceCheck(r, src, l, nowT, true); refused {
		return v
	}
	return g.refuse(r, "", ridMalformed, Drop, 0, "datagram is not SIP; it starts "+strconv.Quote(string(head)), nowT)
}

// checkTarget checks what the request is for: ghost calls, relay attempts, unknown users.
func (g *Guard) checkTarget(r *Request, src netip.Addr, now time.Time) Verdict {
	switch r.Method {
	case "INVITE":
	case "REGISTER":
		if r.ToUser != "" && !g.isRoom(r.ToUser) {
			return g.unknown(r, src, r.ToUser, r.ToHost, ridUnknownUser, "", now)
		}
		return Verdict{}
	case "ACK", "CANCEL", "BYE", "PRACK", "UPDATE", "INFO":
		return Verdict{}
	default:
		if r.RURIUser != "" && g.hosts.IsDomain(r.RURIHost) && !g.isRoom(r.RURIUser) {
			return g.unknown(r, src, r.RURIUser, r.RURIHost, ridUnknownUser, "", now)
		}
		return Verdict{}
	}
	// INVITE. A "room" calling itself is an extension scanner's probe (svwar puts the tried
	// extension in From, To and the Request-URI): nothing rings, existing or not, and the tried
	// name counts towards enumeration.
	if r.FromUser != "" && strings.EqualFold(r.FromUser, r.RURIUser) && g.hosts.Ours(r.FromHost) && g.hosts.Ours(r.RURIHost) {
		return g.unknown(r, src, r.RURIUser, r.RURIHost, ridGhostCall, "INVITE from "+r.RURIUser+" to itself (extension scanner probe)", now)
	}
	// A caller claiming our domain is a room dialling out from a flow we do not know (a new
	// connection): the B2BUA challenges it, and failures count as brute force.
	if g.hosts.IsDomain(r.FromHost) {
		return Verdict{}
	}
	host, user := r.RURIHost, r.RURIUser
	if ip, ok := siphost.IP(host); ok {
		if g.hosts.IsAddr(ip) {
			if g.cfg.AllowIPDialing && user != "" && g.isRoom(user) {
				return Verdict{}
			}
			return g.unknown(r, src, user, host, ridGhostCall, "INVITE to our IP address "+siphost.Trim(host)+" instead of sip:room@"+g.cfg.Domain, now)
		}
		return g.unknown(r, src, user, host, ridRelay, "INVITE for "+siphost.Trim(host)+", an address that is not ours", now)
	}
	if !g.hosts.IsDomain(host) {
		return g.unknown(r, src, user, host, ridRelay, "INVITE for domain "+siphost.Trim(host)+", which is not ours", now)
	}
	switch {
	case user == "":
		return g.unknown(r, src, user, host, ridGhostCall, "INVITE without a user", now)
	case g.isRoom(user):
		return Verdict{}
	case isNumeric(user):
		return g.unknown(r, src, user, host, ridGhostCall, "numeric extension "+user+" is no room", now)
	}
	return g.unknown(r, src, user, host, ridUnknownUser, "", now)
}

// unknown counts an unknown target user for enumeration. Once the source tried too many it
// refuses with enumeration (and a ban). Otherwise an INVITE is refused with rule (why as the
// reason; unknown-user answers 404 with its own), and other methods pass: their answer is the
// registrar's or the node's business, the count is ours.
func (g *Guard) unknown(r *Request, src netip.Addr, user, host string, rule ruleID, why string, now time.Time) Verdict {
	if g.countUnknown(src, user, host, now.UnixNano()) {
		reason := fmt.Sprintf("%d different unknown users within %s", g.cfg.UnknownUsers, g.cfg.UnknownWindow)
		return g.refuseScan(r, ridEnumeration, 403, g.banFor(src, ridEnumeration, reason, now), now)
	}
	if r.Method != "INVITE" {
		return Verdict{}
	}
	if rule == ridUnknownUser {
		return g.refuseScan(r, rule, 404, user+" is no room", now)
	}
	return g.refuseScan(r, rule, 403, why, now)
}

// countUnknown records an unknown user tried by src and reports whether the source reached the
// enumeration threshold (the record is then cleared).
func (g *Guard) countUnknown(src netip.Addr, user, host string, now int64) bool {
	var h maphash.Hash
	h.SetSeed(g.seed)
	writeFold(&h, user)
	if host != "" && !g.hosts.IsDomain(host) {
		h.WriteByte('@')
		writeFold(&h, siphost.Trim(host))
	}
	sum := h.Sum64()
	k := sourceKey(src)
	sh := g.table.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s := sh.get(k, g.table.perShard)
	s.seen = now
	cut := now - int64(g.cfg.UnknownWindow)
	kept := s.unknown[:0]
	found := false
	for _, u := range s.unknown {
		if u.at <= cut {
			continue
		}
		if u.hash == sum {
			u.at, found = now, true
		}
		kept = append(kept, u)
	}
	if !found {
		kept = append(kept, unknownUser{hash: sum, at: now})
	}
	s.unknown = kept
	if len(kept) >= g.cfg.UnknownUsers {
		s.unknown = s.unknown[:0]
		return true
	}
	return false
}

// writeFold hashes s with ASCII letters folded to lower case.
func writeFold(h *maphash.Hash, s string) {
	for i := 0; i < len(s); i++ {
		_ = h.WriteByte(lower(s[i]))
	}
}

func (g *Guard) isRoom(user string) bool {
	if g.roomsBuilt.Load() != g.roomsChanged.Load() {
		return g.store.State().HasRoom(user) // rooms changed since the copy was built
	}
	_, ok := (*g.roomNames.Load())[user]
	return ok
}
