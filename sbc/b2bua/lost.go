package b2bua

import (
	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// Calls ended by the cluster. When a node dies, restarts or an operator ends a call whose owner
// is elsewhere, the call is ended in the replicated state (state.EndNodeCalls,
// state.EndCallsByID), which also writes its record. Every node then ends the legs it still
// holds of those calls: the owner (if it is alive after all) hangs up both legs without a
// second record; the node that holds the room's leg of a call handed over the internal trunk
// sends the room a BYE; a call whose other leg was on a lost node is hung up with the reason
// "node lost".

// CallsEnded ends this node's legs of calls the cluster ended. It must not block: it is called
// from the state's apply path.
func (e *Engine) CallsEnded(ended state.Ended) {
	e.mu.Lock()
	all := make([]*call, 0, len(e.calls))
	for _, c := range e.calls {
		all = append(all, c)
	}
	e.mu.Unlock()
	byID := make(map[string]bool, len(ended.Records))
	byLegB := make(map[string]bool, len(ended.Records))
	for _, r := range ended.Records {
		byID[r.ID] = true
		if r.B.CallID != "" {
			byLegB[r.B.CallID] = true
		}
	}
	adopting := make(map[string]bool) // trunk legs whose calls this node adopts (adopt_trunk.go)
	for _, sc := range ended.Adopted {
		if sc.Node == e.cfg.NodeID {
			adopting[sc.B.CallID] = true
			adopting[sc.ID] = true // its room leg was on the lost node (adopt_far.go)
		}
	}
	var mine []*call // owned here: the record exists already
	var legs []*call // legs of those calls held here, or calls tied to a lost node
	for _, c := range all {
		switch {
		case c.recordsHere() && byID[c.tableID()]:
			mine = append(mine, c)
		case c.fromTrunk && byLegB[c.a.id()]:
			legs = append(legs, c)
		case c.fromTrunk && adopting[c.a.id()], !c.fromTrunk && adopting[c.tableID()]:
		case ended.Lost != "" && ended.Lost != e.cfg.NodeID && (c.trunkFrom == ended.Lost || c.peerNode() == ended.Lost):
			legs = append(legs, c)
		}
	}
	if len(mine)+len(legs) == 0 {
		return
	}
	reason := state.ReasonNodeLost
	if len(ended.Records) > 0 && ended.Lost == "" {
		reason = ended.Records[0].EndReason
	}
	go func() {
		for _, c := range mine {
			c.mu.Lock()
			c.recorded = true
			c.mu.Unlock()
			c.hangup(reason, 0)
		}
		for _, c := range legs {
			c.hangup(reason, 0)
		}
	}()
	e.log.Info("ending calls the cluster ended", "lost_node", ended.Lost, "owned", len(mine), "legs", len(legs), "reason", reason)
}

// peerNode is the node leg B was handed to over the trunk, if any.
func (c *call) peerNode() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bNode
}

// Holds reports whether this node has the call in memory (as its owner).
func (e *Engine) Holds(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.calls[id]
	return c != nil && c.recordsHere()
}
