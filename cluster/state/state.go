package state

import (
	"net/netip"
	"slices"
	"sync"
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
	realm     string // the SIP domain of nodes whose sip.domain is unset (SetRealm)
	acme      acmeState
	applied   uint64 // commands applied, for diagnostics
	// sinkCursors is the last call record delivered to each sink (sinks.go).
	sinkCursors map[string]uint64
	// once remembers the envelopes applied (once.go); onceDups counts those skipped.
	once     onceLog
	onceDups uint64
	// formats is what every member applies, as the leader last recorded (formats.go).
	formats *Formats

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
