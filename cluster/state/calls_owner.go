package state

import (
	"fmt"
	"slices"
	"time"
)

// Call ownership. Every active call names the node that bridges it (Call.Node): that node keeps
// the call's dialogs and media in memory and writes its record when it ends. When the owner can
// no longer do so (it died, it restarted and lost its memory, an operator ends a call whose owner
// is gone), another node ends the call in the state with EndCalls: the call leaves the table, the
// room is free again for drop-in checks, and a record with the given reason is appended.

// Call end reasons written by the cluster rather than by the call's own signalling.
const (
	// ReasonNodeLost: the call's owner died, or restarted and no longer holds the call.
	ReasonNodeLost = "node lost"
	// ReasonAdmin: an operator ended the call.
	ReasonAdmin = "ended by admin"
)

// CmdEndCalls ends active calls on behalf of their owner. Never renumber. It is ignorable: a
// node running an older binary during a rolling upgrade skips it and keeps the ghost calls (as
// it did before) rather than stop; it ends them when it restarts on the new binary, which
// replays the entry.
const CmdEndCalls CmdType = Ignorable | 17

func init() { cmdNames[CmdEndCalls] = "end-calls" }

// endCalls is the payload of CmdEndCalls. Apply ends every active call that matches and
// ignores the rest, so the command may be applied twice (an unknown outcome retried) and two
// survivors may race to end the same calls: each call gets exactly one record.
type endCalls struct {
	// Node, when set, limits the command to calls owned by this node. With no IDs it selects
	// every call the node owns (the node was lost).
	Node string `json:"node,omitempty"`
	// IDs selects these calls (with Node, only those this node owns).
	IDs    []string  `json:"ids,omitempty"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"` // when the calls ended, by the proposer's clock
	By     string    `json:"by,omitempty"`
}

// EndNodeCalls ends every active call owned by node (which was lost), with reason and the
// proposer's time; by names the proposing node (logs).
func EndNodeCalls(node, reason, by string, at time.Time) Command {
	return newCommand(CmdEndCalls, endCalls{Node: node, Reason: reason, At: at.UTC(), By: by})
}

// EndCallsByID ends the active calls with these IDs (when node is set, only those it owns).
func EndCallsByID(ids []string, node, reason, by string, at time.Time) Command {
	return newCommand(CmdEndCalls, endCalls{Node: node, IDs: ids, Reason: reason, At: at.UTC(), By: by})
}

// Ended describes what a CmdEndCalls command selected: Lost is the node whose calls all ended
// (empty when the command named calls by ID).
type Ended struct {
	Lost    string
	Records []CallRecord
	// Adopted are the lost node's calls given to survivors (CmdNodeLost): each names its new
	// owner in Node; that node continues the call (adopt.go).
	Adopted []Call
}

// EndedObserver is told about calls ended by CmdEndCalls (after the state changed, outside its
// lock), including commands that ended nothing (a lost node with no calls): the nodes that
// hold a leg of such a call (the room leg of a call handed over the internal trunk) end it too.
type EndedObserver func(Ended)

// ObserveEnded registers fn for CmdEndCalls.
func (s *State) ObserveEnded(fn EndedObserver) {
	s.obsMu.Lock()
	s.endedObs = append(s.endedObs, fn)
	s.obsMu.Unlock()
}

func (s *State) notifyEnded(e Ended) {
	s.obsMu.RLock()
	obs := s.endedObs
	s.obsMu.RUnlock()
	for _, fn := range obs {
		fn(e)
	}
}

// applyEndCalls ends the selected calls. Callers hold mu; the result is passed to the ended
// observers once the lock is released.
func (s *State) applyEndCalls(c Command) (Ended, error) {
	a, err := decode[endCalls](c)
	if err != nil {
		return Ended{}, err
	}
	if a.Node == "" && len(a.IDs) == 0 {
		return Ended{}, fmt.Errorf("%w: end-calls selects no node and no call", ErrBadPayload)
	}
	if a.Reason == "" {
		return Ended{}, fmt.Errorf("%w: end-calls without a reason", ErrBadPayload)
	}
	var sel []Call
	if len(a.IDs) > 0 {
		for _, id := range a.IDs {
			if call, ok := s.calls[id]; ok && (a.Node == "" || call.Node == a.Node) {
				sel = append(sel, call)
			}
		}
	} else {
		for _, call := range s.calls {
			if call.Node == a.Node {
				sel = append(sel, call)
			}
		}
	}
	// Records are appended in a deterministic order on every node.
	slices.SortFunc(sel, func(x, y Call) int {
		if c := x.Started.Compare(y.Started); c != 0 {
			return c
		}
		if x.ID < y.ID {
			return -1
		}
		if x.ID > y.ID {
			return 1
		}
		return 0
	})
	out := Ended{Records: make([]CallRecord, 0, len(sel))}
	if len(a.IDs) == 0 {
		out.Lost = a.Node
	}
	for _, call := range sel {
		out.Records = append(out.Records, s.endActive(call, a.At, a.Reason))
	}
	s.records = trim(s.records, DefaultKeepRecords)
	return out, nil
}

// endActive drops an active call and appends its record (ended at, for reason). Callers hold
// mu and trim the records.
func (s *State) endActive(call Call, at time.Time, reason string) CallRecord {
	s.dropCall(call.ID)
	r := CallRecord{Call: call.Public(), Ended: at, EndReason: reason, Status: 200}
	if call.State != CallAnswered {
		r.Status = 0
	}
	r.State = CallEnded
	if !call.Answered.IsZero() && at.After(call.Answered) {
		r.Duration = at.Sub(call.Answered)
	}
	s.recordSeq++
	r.Seq = s.recordSeq
	s.records = append(s.records, r)
	return r
}

// CallsOf returns the active calls owned by node, oldest first.
func (s *State) CallsOf(node string) []Call {
	var out []Call
	for _, c := range s.Calls() {
		if c.Node == node {
			out = append(out, c)
		}
	}
	return out
}
