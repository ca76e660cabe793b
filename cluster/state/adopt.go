package state

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Calls adopted. When a node is lost, the leader proposes CmdNodeLost with the members that
// survive it. Apply gives each answered call of the lost node whose two legs it held, and whose
// dialog state was replicated (Leg.Target, Leg.SDP), to a survivor: the call's Node becomes
// that survivor and AdoptedFrom the lost node. The survivor rebuilds the dialogs and re-INVITEs
// both legs toward its own relay (b2bua adopt.go); if it cannot, it ends the call with a
// record "node lost". A call the lost node handed over the internal trunk goes to the node that
// holds its room leg (if it survives), which takes over the caller's leg; when that node is the
// one lost, the owner continues with the room's leg it replicated (Call.Far). The other calls of
// the lost node (ringing, or without their dialog state) end as CmdEndCalls ends them.

// CmdNodeLost ends or gives away the calls of a lost node. Never renumber. It is ignorable: a
// node running an older binary skips it and keeps the lost node's calls as ghosts (which it
// ends when it restarts on the new binary and replays the entry).
const CmdNodeLost CmdType = Ignorable | 19

func init() { cmdNames[CmdNodeLost] = "node-lost" }

// nodeLost is the payload of CmdNodeLost.
type nodeLost struct {
	Node string `json:"node"`
	// Adopters are the members that may adopt calls, in the proposer's order; the calls are
	// dealt round-robin in the order they started. None: every call ends.
	Adopters []string  `json:"adopters,omitempty"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
	By       string    `json:"by,omitempty"`
	// HandOver: the node drains and hands its calls over before it stops. The calls that
	// cannot be adopted stay with it (it still holds them) and nothing ends.
	HandOver bool `json:"hand_over,omitempty"`
}

// NodeLost is the command a leader proposes when node is lost: its adoptable calls go to the
// adopters (survivors), the others end with reason.
func NodeLost(node string, adopters []string, reason, by string, at time.Time) Command {
	return newCommand(CmdNodeLost, nodeLost{Node: node, Adopters: adopters, Reason: reason, At: at.UTC(), By: by})
}

// HandOver is the command a draining node proposes before it stops: its adoptable calls go
// to the adopters; the others stay with it.
func HandOver(node string, adopters []string, by string, at time.Time) Command {
	return newCommand(CmdNodeLost, nodeLost{Node: node, Adopters: adopters, Reason: "hand-over", At: at.UTC(), By: by, HandOver: true})
}

// Adoptable reports whether a survivor can continue c: it is answered, its owner held both
// legs, and the dialog state of both was replicated with it.
func Adoptable(c Call) bool {
	if c.State != CallAnswered {
		return false
	}
	for _, l := range []Leg{c.A, c.B} {
		if !l.continuable() || (l.Node != "" && l.Node != c.Node) {
			return false
		}
	}
	return true
}

// AdoptableByTrunk reports whether c, answered, is a call its owner handed over the internal
// trunk to the node that holds its room leg (B.Node), and the caller's leg can be continued
// there: that node adopts it when the owner is lost.
func AdoptableByTrunk(c Call) bool {
	return c.State == CallAnswered && c.A.continuable() && (c.A.Node == "" || c.A.Node == c.Node) &&
		c.B.Node != "" && c.B.Node != c.Node
}

// Public is the call without the dialog state replicated for adoption (the peers' SDPs, which
// may carry SRTP keys, URIs, route sets, CSeqs): what call records, sinks and the admin API
// show.
func (c Call) Public() Call {
	c.A, c.B, c.Far = c.A.public(), c.B.public(), Leg{}
	return c
}

func (l Leg) public() Leg {
	return Leg{CallID: l.CallID, LocalTag: l.LocalTag, RemoteTag: l.RemoteTag, Peer: l.Peer, Transport: l.Transport, Node: l.Node}
}

// continuable reports whether the leg's dialog state was replicated.
func (l Leg) continuable() bool { return l.Target != "" && l.SDP != "" && l.RemoteTag != "" }

// applyNodeLostCommand applies CmdNodeLost; the ended observers are told what it adopted and
// ended. Callers hold mu.
func (s *State) applyNodeLostCommand(c Command) error {
	e, err := s.applyNodeLost(c)
	if err != nil {
		return err
	}
	s.ended = &e
	return nil
}

// applyNodeLost adopts or ends the lost node's calls. Callers hold mu.
func (s *State) applyNodeLost(c Command) (Ended, error) {
	a, err := decode[nodeLost](c)
	if err != nil {
		return Ended{}, err
	}
	if a.Node == "" || a.Reason == "" {
		return Ended{}, fmt.Errorf("%w: node-lost without a node or a reason", ErrBadPayload)
	}
	if slices.Contains(a.Adopters, a.Node) || slices.Contains(a.Adopters, "") {
		return Ended{}, fmt.Errorf("%w: node-lost names the lost node (or no node) as adopter", ErrBadPayload)
	}
	var sel, far []Call
	for _, call := range s.calls {
		switch {
		case call.Node == a.Node:
			sel = append(sel, call)
		case call.B.Node == a.Node && call.State == CallAnswered && call.Far.continuable() &&
			slices.Contains(a.Adopters, call.Node):
			far = append(far, call)
		}
	}
	slices.SortFunc(far, func(x, y Call) int { return strings.Compare(x.ID, y.ID) })
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
	out := Ended{Lost: a.Node}
	if a.HandOver {
		out.Lost = "" // the node lives on: nobody ends the legs tied to it
	}
	next := 0
	for _, call := range sel {
		adopter := ""
		switch {
		case len(a.Adopters) > 0 && Adoptable(call):
			adopter = a.Adopters[next%len(a.Adopters)]
			next++
		case AdoptableByTrunk(call) && slices.Contains(a.Adopters, call.B.Node):
			adopter = call.B.Node // it holds the room's leg: it keeps it and takes the caller's
		}
		if adopter != "" {
			call.Node = adopter
			call.AdoptedFrom = a.Node
			call.A.Node, call.B.Node = call.Node, call.Node
			s.putCall(call)
			out.Adopted = append(out.Adopted, call)
			continue
		}
		if !a.HandOver {
			out.Records = append(out.Records, s.endActive(call, a.At, a.Reason))
		}
	}
	for _, call := range far {
		// the room's node is lost, the owner lives: it continues with the room's leg
		call.B, call.Far = call.Far, Leg{}
		call.B.Node = call.Node
		call.AdoptedFrom = a.Node
		s.putCall(call)
		out.Adopted = append(out.Adopted, call)
	}
	s.records = trim(s.records, DefaultKeepRecords)
	return out, nil
}
