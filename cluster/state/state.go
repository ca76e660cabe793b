package state

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Default bounds of the append-only logs kept in the state.
const (
	DefaultKeepRecords = 100_000
	DefaultKeepAudit   = 10_000
)

// Observer is told about every applied command, after the state changed and outside its lock.
type Observer func(c Command)

// State is the whole replicated data model. The zero value is not usable; call New.
type State struct {
	mu        sync.RWMutex
	rooms     map[string]Room
	bindings  map[string]map[string]Binding // room -> contact -> binding
	bans      map[netip.Prefix]Ban
	lists     Lists
	calls     map[string]Call
	roomCalls map[string]map[string]int // room -> node -> active calls in calls
	records   []CallRecord              // ordered by Seq
	recordSeq uint64
	tokens    map[string]Token
	audit     []AuditEntry
	auditSeq  uint64
	trunkKey  []byte // signs calls handed between nodes
	acme      acmeState
	applied   uint64 // commands applied, for diagnostics
	// sinkCursors is the last call record delivered to each sink (sinks.go).
	sinkCursors map[string]uint64

	// flows counts the bindings registered from each source address and port, flowUnits from
	// each IPv4 address or IPv6 /64 (see RegisteredBehind). They have their own lock: every SIP
	// request reads them, and applying an unrelated command must not hold those readers up.
	// Writers hold mu as well.
	flowMu    sync.RWMutex
	flows     map[netip.AddrPort]int
	flowUnits map[netip.Addr]int
	trunks    map[nodeTrunk]int  // bindings per node and trunk address (Binding.Local)
	callPeers map[netip.Addr]int // legs of active calls per peer address or /64 (CallsWith)

	obsMu     sync.RWMutex
	observers []*observer // copied on write: notify reads a snapshot without the lock
	endedObs  []EndedObserver
	ended     *Ended // what the command being applied ended (CmdEndCalls), for endedObs
}

// New returns an empty state.
func New() *State {
	s := &State{}
	s.reset()
	return s
}

func (s *State) reset() {
	s.rooms = map[string]Room{}
	s.bindings = map[string]map[string]Binding{}
	s.bans = map[netip.Prefix]Ban{}
	s.lists = Lists{}
	s.calls = map[string]Call{}
	s.roomCalls = map[string]map[string]int{}
	s.flows = map[netip.AddrPort]int{}
	s.flowUnits = map[netip.Addr]int{}
	s.trunks = map[nodeTrunk]int{}
	s.callPeers = map[netip.Addr]int{}
	s.records = nil
	s.recordSeq = 0
	s.tokens = map[string]Token{}
	s.audit = nil
	s.auditSeq = 0
	s.sinkCursors = map[string]uint64{}
}

type observer struct{ fn Observer }

// Observe registers fn to be called after every applied command and after a Restore (with a
// Command of type CmdRestored). Calling cancel unregisters fn (a component that stops, such as
// a guard replaced on a config reload, must not stay in the list).
func (s *State) Observe(fn Observer) (cancel func()) {
	o := &observer{fn}
	s.obsMu.Lock()
	s.observers = append(s.observers[:len(s.observers):len(s.observers)], o)
	s.obsMu.Unlock()
	return func() {
		s.obsMu.Lock()
		defer s.obsMu.Unlock()
		s.observers = slices.DeleteFunc(slices.Clone(s.observers), func(x *observer) bool { return x == o })
	}
}

func (s *State) notify(c Command) {
	s.obsMu.RLock()
	obs := s.observers
	s.obsMu.RUnlock()
	for _, o := range obs {
		o.fn(c)
	}
}

// Apply changes the state by one command. It is deterministic. An error for an unknown,
// non-ignorable type or a newer version means this node cannot follow the log and must stop;
// other errors (a bad payload) are returned to the proposer and change nothing.
func (s *State) Apply(c Command) error {
	if c.Version > cmdVersion || c.Version == binVersion && !hot(c.Type) {
		if c.Type&Ignorable != 0 {
			return nil
		}
		return fmt.Errorf("%w: %s v%d", ErrNewerVersion, c.Type, c.Version)
	}
	s.mu.Lock()
	err := s.apply(c)
	if err == nil {
		s.applied++
	}
	ended := s.ended
	s.ended = nil
	s.mu.Unlock()
	if err == nil {
		s.notify(c)
		if ended != nil {
			s.notifyEnded(*ended)
		}
	}
	return err
}

// Fatal reports whether an Apply error means the node cannot follow the log.
func Fatal(err error) bool {
	return errors.Is(err, ErrUnknownCommand) || errors.Is(err, ErrNewerVersion)
}

func decode[T any](c Command) (T, error) {
	var v T
	if err := json.Unmarshal(c.Payload, &v); err != nil {
		return v, fmt.Errorf("%w: %s: %v", ErrBadPayload, c.Type, err)
	}
	return v, nil
}

func (s *State) apply(c Command) error {
	switch c.Type {
	case CmdPutRoom:
		r, err := decode[Room](c)
		if err != nil {
			return err
		}
		if r.Name == "" {
			return fmt.Errorf("%w: room without a name", ErrBadPayload)
		}
		s.rooms[r.Name] = r
	case CmdDeleteRoom:
		k, err := decode[roomKey](c)
		if err != nil {
			return err
		}
		if _, ok := s.rooms[k.Room]; !ok {
			return fmt.Errorf("room %q: %w", k.Room, ErrNotFound)
		}
		delete(s.rooms, k.Room)
		s.dropBindings(k.Room, nil)
	case CmdPutBinding:
		b, err := decodeHot(c, DecodeBinding)
		if err != nil {
			return err
		}
		s.putBinding(b)
	case CmdDeleteBinding:
		k, err := decode[bindingKey](c)
		if err != nil {
			return err
		}
		s.dropBindings(k.Room, func(b Binding) bool { return b.Key() == k.Contact })
	case CmdDeleteRoomBindings:
		k, err := decode[roomKey](c)
		if err != nil {
			return err
		}
		s.dropBindings(k.Room, nil)
	case CmdSetTrunkKey:
		k, err := decode[trunkKey](c)
		if err != nil {
			return err
		}
		if len(s.trunkKey) == 0 && len(k.Key) >= 16 {
			s.trunkKey = k.Key
		}
	case CmdDeleteNodeBindings:
		k, err := decode[nodeKey](c)
		if err != nil {
			return err
		}
		for room := range s.bindings {
			s.dropBindings(room, func(b Binding) bool { return b.Node == k.Node })
		}
	case CmdExpire:
		a, err := decode[expireArgs](c)
		if err != nil {
			return err
		}
		s.expire(a)
	case CmdPutBan:
		b, err := decode[Ban](c)
		if err != nil {
			return err
		}
		if !b.Prefix.IsValid() {
			return fmt.Errorf("%w: ban without a valid prefix", ErrBadPayload)
		}
		b.Prefix = b.Prefix.Masked()
		s.bans[b.Prefix] = b
	case CmdLiftBan:
		k, err := decode[prefixKey](c)
		if err != nil {
			return err
		}
		p := k.Prefix.Masked()
		if _, ok := s.bans[p]; !ok {
			return fmt.Errorf("ban %s: %w", p, ErrNotFound)
		}
		delete(s.bans, p)
	case CmdSetLists:
		l, err := decode[Lists](c)
		if err != nil {
			return err
		}
		s.lists = l
	case CmdPutCall:
		call, err := decodeHot(c, DecodeCall)
		if err != nil {
			return err
		}
		s.putCall(call)
	case CmdEndCall:
		r, err := decodeHot(c, DecodeCallRecord)
		if err != nil {
			return err
		}
		s.dropCall(r.ID)
		s.recordSeq++
		r.Seq = s.recordSeq
		r.State = CallEnded
		s.records = append(s.records, r)
		s.records = trimTail(s.records, DefaultKeepRecords)
	case CmdEndCalls:
		e, err := s.applyEndCalls(c)
		if err != nil {
			return err
		}
		s.ended = &e
	case CmdSinkCursor:
		return s.applySinkCursor(c)
	case CmdPutToken:
		t, err := decode[Token](c)
		if err != nil {
			return err
		}
		s.tokens[t.ID] = t
	case CmdDeleteToken:
		k, err := decode[idKey](c)
		if err != nil {
			return err
		}
		if _, ok := s.tokens[k.ID]; !ok {
			return fmt.Errorf("token %q: %w", k.ID, ErrNotFound)
		}
		delete(s.tokens, k.ID)
	case CmdAudit:
		e, err := decode[AuditEntry](c)
		if err != nil {
			return err
		}
		s.auditSeq++
		e.Seq = s.auditSeq
		s.audit = append(s.audit, e)
		s.audit = trim(s.audit, DefaultKeepAudit)
	default:
		if ok, err := s.applyACME(c); ok {
			return err
		}
		if c.Type&Ignorable != 0 {
			return nil
		}
		return fmt.Errorf("%w: %s", ErrUnknownCommand, c.Type)
	}
	return nil
}

// trimTail keeps the last keep elements without copying them: the dropped head stays in the
// backing array until the next append outgrows it, which then copies only what is kept. So an
// append to a full log costs O(1) amortized, not a copy of the log (trim's), with memory bounded
// to about twice keep.
func trimTail[T any](s []T, keep int) []T {
	if len(s) <= keep {
		return s
	}
	clear(s[:len(s)-keep]) // release what the dropped elements point to
	return s[len(s)-keep:]
}

func trim[T any](s []T, keep int) []T {
	if len(s) <= keep {
		return s
	}
	// Copy so the dropped head is released rather than pinned by the backing array.
	return append([]T(nil), s[len(s)-keep:]...)
}

func (s *State) expire(a expireArgs) {
	for room := range s.bindings {
		s.dropBindings(room, func(b Binding) bool { return !b.Expires.After(a.Now) })
	}
	for p, b := range s.bans {
		if !b.Until.After(a.Now) {
			delete(s.bans, p)
		}
	}
	if a.KeepRecords > 0 {
		s.records = trim(s.records, a.KeepRecords)
	}
	if a.KeepAudit > 0 {
		s.audit = trim(s.audit, a.KeepAudit)
	}
}

// Due reports whether Expire at now would drop anything: a binding or a ban that expired at or
// before now. The leader checks it before proposing an Expire, so an idle cluster writes nothing.
func (s *State) Due(now time.Time) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, m := range s.bindings {
		for _, b := range m {
			if !b.Expires.After(now) {
				return true
			}
		}
	}
	for _, b := range s.bans {
		if !b.Until.After(now) {
			return true
		}
	}
	return false
}

// Room returns a room by name.
func (s *State) Room(name string) (Room, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.rooms[name]
	return r, ok
}

// Rooms returns every room, sorted by name.
func (s *State) Rooms() []Room {
	s.mu.RLock()
	out := make([]Room, 0, len(s.rooms))
	for _, r := range s.rooms {
		out = append(out, r)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Room) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Bindings returns the bindings of a room that are still valid at now, oldest contact first.
func (s *State) Bindings(room string, now time.Time) []Binding {
	s.mu.RLock()
	m := s.bindings[room]
	out := make([]Binding, 0, len(m))
	for _, b := range m {
		if b.Expires.After(now) {
			out = append(out, b)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Binding) int {
		return cmp.Or(cmp.Compare(a.Contact, b.Contact), cmp.Compare(a.Key(), b.Key()))
	})
	return out
}

// AllBindings returns every binding valid at now, sorted by room and contact.
func (s *State) AllBindings(now time.Time) []Binding {
	s.mu.RLock()
	var out []Binding
	for _, m := range s.bindings {
		for _, b := range m {
			if b.Expires.After(now) {
				out = append(out, b)
			}
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Binding) int {
		return cmp.Or(cmp.Compare(a.Room, b.Room), cmp.Compare(a.Contact, b.Contact), cmp.Compare(a.Key(), b.Key()))
	})
	return out
}

// Bans returns every ban still in force at now, sorted by prefix.
func (s *State) Bans(now time.Time) []Ban {
	s.mu.RLock()
	out := make([]Ban, 0, len(s.bans))
	for _, b := range s.bans {
		if b.Until.After(now) {
			out = append(out, b)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Ban) int { return cmp.Compare(a.Prefix.String(), b.Prefix.String()) })
	return out
}

// Ban returns the ban of exactly this prefix, expired or not.
func (s *State) Ban(p netip.Prefix) (Ban, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, ok := s.bans[p.Masked()]
	return b, ok
}

// Lists returns a copy of the guard's global lists.
func (s *State) Lists() Lists {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return Lists{
		Allow:             slices.Clone(s.lists.Allow),
		Deny:              slices.Clone(s.lists.Deny),
		ScannerUserAgents: slices.Clone(s.lists.ScannerUserAgents),
	}
}

// Call returns an active call by ID.
func (s *State) Call(id string) (Call, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.calls[id]
	return c, ok
}

// RoomInCall reports whether room has an active call handled by a node other than except
// (empty: by any node). It reads a per-room index: an INVITE's drop-in check costs the same
// with 10 or 10,000 calls in the table, and copies nothing.
func (s *State) RoomInCall(room, except string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for node := range s.roomCalls[room] {
		if node != except {
			return true
		}
	}
	return false
}

// RegisteredFlow reports whether a room's binding was registered from src (its signalling
// flow: requests from it skip the caller filter's scan checks). It reads an index kept with
// the bindings, under its own lock: the cost does not grow with the number of rooms, and a
// registration elsewhere in the cluster does not rebuild anything.
func (s *State) RegisteredFlow(src netip.AddrPort) bool {
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	s.flowMu.RLock()
	n := s.flows[src]
	s.flowMu.RUnlock()
	return n > 0
}

// RegisteredBehind returns how many bindings were registered from a's IPv4 address, or from
// a's IPv6 /64 (one site or subscriber: the unit of the caller filter's limits and bans). It
// tells a customer's NAT address, whose rooms come back all at once after an outage, from a
// stranger.
func (s *State) RegisteredBehind(a netip.Addr) int {
	u := flowUnit(a)
	s.flowMu.RLock()
	n := s.flowUnits[u]
	s.flowMu.RUnlock()
	return n
}

// CallsWith returns how many legs of active calls have their signalling peer at a's IPv4
// address or IPv6 /64: a far end that carries many calls (a conferencing service, a partner's
// gateway) sends in proportion, and the caller filter's meter budgets it so.
func (s *State) CallsWith(a netip.Addr) int {
	u := flowUnit(a)
	s.flowMu.RLock()
	n := s.callPeers[u]
	s.flowMu.RUnlock()
	return n
}

// nodeTrunk is a node and the trunk address its bindings name.
type nodeTrunk struct{ node, addr string }

// TrunkAddrs returns the trunk addresses (Binding.Local) that bindings of nodes other than
// except name, sorted: where this node hands calls for rooms registered elsewhere. It reads an
// index: the cost grows with the nodes, not the bindings.
func (s *State) TrunkAddrs(except string) []string {
	s.flowMu.RLock()
	var out []string
	for k := range s.trunks {
		if k.node != except && !slices.Contains(out, k.addr) {
			out = append(out, k.addr)
		}
	}
	s.flowMu.RUnlock()
	slices.Sort(out)
	return out
}

// flowUnit is a's IPv4 address, or its IPv6 /64.
func flowUnit(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		b := a.As16()
		clear(b[8:])
		return netip.AddrFrom16(b)
	}
	return a
}

// putBinding adds or replaces a binding and keeps flows in step. Callers hold mu (or own s).
func (s *State) putBinding(b Binding) {
	m := s.bindings[b.Room]
	if m == nil {
		m = map[string]Binding{}
		s.bindings[b.Room] = m
	}
	old, had := m[b.Key()]
	m[b.Key()] = b
	s.flowMu.Lock()
	if had {
		s.indexFlow(old, -1)
	}
	s.indexFlow(b, 1)
	s.flowMu.Unlock()
}

// dropBindings removes the bindings of room for which drop reports true (nil: all of them)
// and keeps flows in step. Callers hold mu.
func (s *State) dropBindings(room string, drop func(Binding) bool) {
	m := s.bindings[room]
	if m == nil {
		return
	}
	s.flowMu.Lock()
	for contact, b := range m {
		if drop == nil || drop(b) {
			delete(m, contact)
			s.indexFlow(b, -1)
		}
	}
	s.flowMu.Unlock()
	if len(m) == 0 {
		delete(s.bindings, room)
	}
}

// indexFlow counts one binding more or less for its source, and for its node's trunk address.
// Callers hold flowMu.
func (s *State) indexFlow(b Binding, delta int) {
	if b.Local != "" {
		k := nodeTrunk{b.Node, b.Local}
		if s.trunks[k] += delta; s.trunks[k] <= 0 {
			delete(s.trunks, k)
		}
	}
	ap, err := netip.ParseAddrPort(b.Source)
	if err != nil {
		return
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if s.flows[ap] += delta; s.flows[ap] <= 0 {
		delete(s.flows, ap)
	}
	u := flowUnit(ap.Addr())
	if s.flowUnits[u] += delta; s.flowUnits[u] <= 0 {
		delete(s.flowUnits, u)
	}
}

// putCall adds or replaces a call and keeps roomCalls in step. Callers hold mu (or own s).
func (s *State) putCall(c Call) {
	if old, ok := s.calls[c.ID]; ok {
		s.indexCall(old, -1)
	}
	s.calls[c.ID] = c
	s.indexCall(c, 1)
}

// dropCall removes a call and its index entry. Callers hold mu.
func (s *State) dropCall(id string) {
	if old, ok := s.calls[id]; ok {
		s.indexCall(old, -1)
		delete(s.calls, id)
	}
}

func (s *State) indexCall(c Call, delta int) {
	if c.State == CallEnded {
		return
	}
	s.flowMu.Lock()
	for _, peer := range []string{c.A.Peer, c.B.Peer} {
		if ap, err := netip.ParseAddrPort(peer); err == nil {
			u := flowUnit(ap.Addr())
			if s.callPeers[u] += delta; s.callPeers[u] <= 0 {
				delete(s.callPeers, u)
			}
		}
	}
	s.flowMu.Unlock()
	if c.Room == "" {
		return
	}
	byNode := s.roomCalls[c.Room]
	if byNode == nil {
		if delta < 0 {
			return
		}
		byNode = map[string]int{}
		s.roomCalls[c.Room] = byNode
	}
	if byNode[c.Node] += delta; byNode[c.Node] <= 0 {
		delete(byNode, c.Node)
		if len(byNode) == 0 {
			delete(s.roomCalls, c.Room)
		}
	}
}

// Calls returns every active call, oldest first.
func (s *State) Calls() []Call {
	s.mu.RLock()
	out := make([]Call, 0, len(s.calls))
	for _, c := range s.calls {
		out = append(out, c)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Call) int {
		return cmp.Or(a.Started.Compare(b.Started), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// RecordQuery selects call records. Zero fields match everything.
type RecordQuery struct {
	Room      string
	EndReason string
	Since     time.Time // ended at or after
	Until     time.Time // ended before
	AfterSeq  uint64    // paging, oldest first: records with Seq > AfterSeq
	Limit     int       // 0: 100
	// Newest returns the newest records first; BeforeSeq pages on (records with Seq < BeforeSeq,
	// 0: from the newest).
	Newest    bool
	BeforeSeq uint64
}

// Records returns call records matching q in Seq order (reversed with q.Newest).
func (s *State) Records(q RecordQuery) []CallRecord {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	match := func(r CallRecord) bool {
		return !(q.Room != "" && r.Room != q.Room || q.EndReason != "" && r.EndReason != q.EndReason ||
			!q.Since.IsZero() && r.Ended.Before(q.Since) || !q.Until.IsZero() && !r.Ended.Before(q.Until))
	}
	var out []CallRecord
	if q.Newest {
		end := len(s.records)
		if q.BeforeSeq > 0 {
			end, _ = slices.BinarySearchFunc(s.records, q.BeforeSeq, func(r CallRecord, seq uint64) int {
				return cmp.Compare(r.Seq, seq)
			})
		}
		for i := end - 1; i >= 0 && len(out) < limit; i-- {
			if match(s.records[i]) {
				out = append(out, s.records[i])
			}
		}
		return out
	}
	start, _ := slices.BinarySearchFunc(s.records, q.AfterSeq+1, func(r CallRecord, seq uint64) int {
		return cmp.Compare(r.Seq, seq)
	})
	for _, r := range s.records[start:] {
		if !match(r) {
			continue
		}
		out = append(out, r)
		if len(out) == limit {
			break
		}
	}
	return out
}

// Tokens returns every admin token, sorted by ID.
func (s *State) Tokens() []Token {
	s.mu.RLock()
	out := make([]Token, 0, len(s.tokens))
	for _, t := range s.tokens {
		out = append(out, t)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Token) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// AuditLog returns audit entries with Seq > afterSeq, at most limit (0: 100).
func (s *State) AuditLog(afterSeq uint64, limit int) []AuditEntry {
	if limit <= 0 {
		limit = 100
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []AuditEntry
	for _, e := range s.audit {
		if e.Seq > afterSeq {
			out = append(out, e)
			if len(out) == limit {
				break
			}
		}
	}
	return out
}

// Counts is a summary of the state's size.
type Counts struct {
	Rooms, Bindings, Bans, Calls, Records, Tokens, Audit int
	Applied                                              uint64
}

// Counts returns the number of items of each kind.
func (s *State) Counts() Counts {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, m := range s.bindings {
		n += len(m)
	}
	return Counts{Rooms: len(s.rooms), Bindings: n, Bans: len(s.bans), Calls: len(s.calls),
		Records: len(s.records), Tokens: len(s.tokens), Audit: len(s.audit), Applied: s.applied}
}

// snapshot is the serialised form of the state. Maps become sorted slices so that the same state
// always gives the same bytes (and Hash).
type snapshot struct {
	Version   int           `json:"version"`
	Rooms     []Room        `json:"rooms"`
	Bindings  []Binding     `json:"bindings"`
	Bans      []Ban         `json:"bans"`
	Lists     Lists         `json:"lists"`
	Calls     []Call        `json:"calls"`
	Records   []CallRecord  `json:"records"`
	RecordSeq uint64        `json:"record_seq"`
	Tokens    []Token       `json:"tokens"`
	Audit     []AuditEntry  `json:"audit"`
	AuditSeq  uint64        `json:"audit_seq"`
	TrunkKey  []byte        `json:"trunk_key,omitempty"`
	ACME      *acmeSnapshot `json:"acme,omitempty"`
	// SinkCursors: encoding/json writes map keys sorted, so the bytes stay canonical.
	SinkCursors map[string]uint64 `json:"sink_cursors,omitempty"`
}

// Frozen is a consistent copy of the state taken under the read lock, cheap to take; WriteTo does
// the encoding and I/O without holding any lock.
type Frozen struct{ snap snapshot }

// Freeze copies the state. Records and audit entries are never modified in place, so their slices
// are shared rather than copied.
func (s *State) Freeze() *Frozen {
	s.mu.RLock()
	defer s.mu.RUnlock()
	f := &Frozen{snap: snapshot{Version: 1, Lists: s.lists, RecordSeq: s.recordSeq, AuditSeq: s.auditSeq, TrunkKey: s.trunkKey,
		ACME: s.acme.freeze(), Records: s.records[:len(s.records):len(s.records)], Audit: s.audit[:len(s.audit):len(s.audit)]}}
	if len(s.sinkCursors) > 0 {
		f.snap.SinkCursors = maps.Clone(s.sinkCursors)
	}
	for _, r := range s.rooms {
		f.snap.Rooms = append(f.snap.Rooms, r)
	}
	for _, m := range s.bindings {
		for _, b := range m {
			f.snap.Bindings = append(f.snap.Bindings, b)
		}
	}
	for _, b := range s.bans {
		f.snap.Bans = append(f.snap.Bans, b)
	}
	for _, c := range s.calls {
		f.snap.Calls = append(f.snap.Calls, c)
	}
	for _, t := range s.tokens {
		f.snap.Tokens = append(f.snap.Tokens, t)
	}
	return f
}

// WriteTo encodes the frozen state as JSON in a canonical order.
func (f *Frozen) WriteTo(w io.Writer) (int64, error) {
	sn := &f.snap
	slices.SortFunc(sn.Rooms, func(a, b Room) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(sn.Bindings, func(a, b Binding) int {
		return cmp.Or(cmp.Compare(a.Room, b.Room), cmp.Compare(a.Contact, b.Contact), cmp.Compare(a.Key(), b.Key()))
	})
	slices.SortFunc(sn.Bans, func(a, b Ban) int { return cmp.Compare(a.Prefix.String(), b.Prefix.String()) })
	slices.SortFunc(sn.Calls, func(a, b Call) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(sn.Tokens, func(a, b Token) int { return cmp.Compare(a.ID, b.ID) })
	cw := &countWriter{w: w}
	err := json.NewEncoder(cw).Encode(sn)
	return cw.n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Restore replaces the whole state with a snapshot written by Frozen.WriteTo. The new state is
// built aside and swapped in under the lock; on error the old state is kept.
func (s *State) Restore(r io.Reader) error {
	var sn snapshot
	if err := json.NewDecoder(r).Decode(&sn); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	if sn.Version != 1 {
		return fmt.Errorf("%w: version %d", ErrBadSnapshot, sn.Version)
	}
	n := New()
	for _, r := range sn.Rooms {
		n.rooms[r.Name] = r
	}
	for _, b := range sn.Bindings {
		n.putBinding(b)
	}
	for _, b := range sn.Bans {
		n.bans[b.Prefix] = b
	}
	for _, c := range sn.Calls {
		n.putCall(c)
	}
	for _, t := range sn.Tokens {
		n.tokens[t.ID] = t
	}
	s.mu.Lock()
	s.rooms, s.bindings, s.bans, s.calls, s.roomCalls, s.tokens = n.rooms, n.bindings, n.bans, n.calls, n.roomCalls, n.tokens
	s.lists, s.records, s.recordSeq, s.audit, s.auditSeq = sn.Lists, sn.Records, sn.RecordSeq, sn.Audit, sn.AuditSeq
	s.trunkKey = sn.TrunkKey
	s.sinkCursors = sn.SinkCursors
	if s.sinkCursors == nil {
		s.sinkCursors = map[string]uint64{}
	}
	s.acme = sn.ACME.thaw()
	s.flowMu.Lock()
	s.flows, s.flowUnits, s.trunks, s.callPeers = n.flows, n.flowUnits, n.trunks, n.callPeers
	s.flowMu.Unlock()
	s.mu.Unlock()
	s.notify(Command{Type: CmdRestored})
	return nil
}

// TrunkKey returns the key that signs calls handed between nodes (nil until one is set).
func (s *State) TrunkKey() []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.trunkKey
}

// Hash returns a digest of the canonical snapshot: two nodes with the same hash hold the same state.
func (s *State) Hash() string {
	h := sha256.New()
	if _, err := s.Freeze().WriteTo(h); err != nil {
		return "error: " + err.Error()
	}
	return hex.EncodeToString(h.Sum(nil))
}
