// Reads: every domain's queries, under the read lock, returning copies.

package state

import (
	"cmp"
	"net/netip"
	"slices"
	"time"
)

// Room returns a room by name.
func (s *State) Room(name string) (Room, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.rooms[name]
	return r, ok
}

// HasRoom reports whether a room of that name exists (no copy of it).
func (s *State) HasRoom(name string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.rooms[name]
	return ok
}

// RoomNames returns the names of every room, in no order.
func (s *State) RoomNames() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.rooms))
	for name := range s.rooms {
		out = append(out, name)
	}
	return out
}

// sortedValues copies the values of the map get returns (read under the read lock) for which
// keep holds (nil: all of them) and sorts the copy by order, outside the lock.
func sortedValues[K comparable, V any](s *State, get func() map[K]V, keep func(V) bool, order func(a, b V) int) []V {
	s.mu.RLock()
	m := get()
	out := make([]V, 0, len(m))
	for _, v := range m {
		if keep == nil || keep(v) {
			out = append(out, v)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, order)
	return out
}

// Rooms returns every room, sorted by name.
func (s *State) Rooms() []Room {
	return sortedValues(s, func() map[string]Room { return s.rooms }, nil,
		func(a, b Room) int { return cmp.Compare(a.Name, b.Name) })
}

// Bindings returns the bindings of a room that are still valid at now, oldest contact first.
func (s *State) Bindings(room string, now time.Time) []Binding {
	return sortedValues(s, func() map[string]Binding { return s.bindings[room] },
		func(b Binding) bool { return b.Expires.After(now) },
		func(a, b Binding) int {
			return cmp.Or(cmp.Compare(a.Contact, b.Contact), cmp.Compare(a.Key(), b.Key()))
		})
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
	return sortedValues(s, func() map[netip.Prefix]Ban { return s.bans },
		func(b Ban) bool { return b.Until.After(now) },
		func(a, b Ban) int { return cmp.Compare(a.Prefix.String(), b.Prefix.String()) })
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

// Calls returns every active call, oldest first.
func (s *State) Calls() []Call {
	return sortedValues(s, func() map[string]Call { return s.calls }, nil,
		func(a, b Call) int { return cmp.Or(a.Started.Compare(b.Started), cmp.Compare(a.ID, b.ID)) })
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
	return sortedValues(s, func() map[string]Token { return s.tokens }, nil,
		func(a, b Token) int { return cmp.Compare(a.ID, b.ID) })
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

// TrunkKey returns the key that signs calls handed between nodes (nil until one is set).
func (s *State) TrunkKey() []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.trunkKey
}

// Realm returns the SIP domain and digest realm recorded for the cluster ("" until one is).
func (s *State) Realm() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.realm
}
