// Snapshots: a canonical serialised form (Freeze, WriteTo), Restore and the state's Hash.

package state

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
)

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
	Realm     string        `json:"realm,omitempty"`
	ACME      *acmeSnapshot `json:"acme,omitempty"`
	// SinkCursors: encoding/json writes map keys sorted, so the bytes stay canonical.
	SinkCursors map[string]uint64 `json:"sink_cursors,omitempty"`
	// Once: the ids of the last envelopes applied (once.go).
	Once *onceSnapshot `json:"once,omitempty"`
	// Formats: what every member applies (formats.go).
	Formats *Formats `json:"formats,omitempty"`
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
		Realm: s.realm,
		ACME:  s.acme.freeze(), Records: s.records[:len(s.records):len(s.records)], Audit: s.audit[:len(s.audit):len(s.audit)]}}
	f.snap.Once = s.once.freeze()
	f.snap.Formats = s.formats
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
	s.trunkKey, s.realm = sn.TrunkKey, sn.Realm
	s.sinkCursors = sn.SinkCursors
	if s.sinkCursors == nil {
		s.sinkCursors = map[string]uint64{}
	}
	s.acme = sn.ACME.thaw()
	s.once = sn.Once.thaw()
	s.formats = sn.Formats
	s.flowMu.Lock()
	s.flows, s.flowUnits, s.trunks, s.callPeers = n.flows, n.flowUnits, n.trunks, n.callPeers
	s.flowMu.Unlock()
	s.mu.Unlock()
	s.notify(Command{Type: CmdRestored})
	return nil
}

// Hash returns a digest of the canonical snapshot: two nodes with the same hash hold the same state.
func (s *State) Hash() string {
	h := sha256.New()
	if _, err := s.Freeze().WriteTo(h); err != nil {
		return "error: " + err.Error()
	}
	return hex.EncodeToString(h.Sum(nil))
}
