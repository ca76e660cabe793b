package sbc

import (
	"context"
	"fmt"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// Ghost calls: calls the replicated state lists as answered, owned by a node that no longer
// holds them. The cluster ends the calls of a lost node (cluster.Config.NodeLostAfter); this
// node ends, once it has caught up after a start, the calls the state says it owns (its previous
// process held them, and they died with it); and every node ends its own legs of calls the
// cluster ended elsewhere (b2bua.Engine.CallsEnded).

// watchEndedCalls hands every call the cluster ends to the B2BUA, which ends the legs it holds,
// and every call the cluster gives to a survivor of its lost node (b2bua.Engine.Adopted).
func (n *Node) watchEndedCalls() {
	e := n.calls
	n.store.State().ObserveEnded(func(ended state.Ended) {
		e.CallsEnded(ended)
		if len(ended.Adopted) > 0 {
			// a node replaying old entries at its start adopts nothing: once caught up, it
			// ends the calls it owns but does not hold (endOwnGhosts)
			e.Adopted(ended.Adopted, n.isReady())
		}
	})
}

// endOwnGhosts ends the calls the state says this node owns but that it does not hold: after a
// restart, all of them (record "node lost"). A restart never revives a call.
func (n *Node) endOwnGhosts(ctx context.Context) error {
	var ids []string
	for _, c := range n.store.State().CallsOf(n.cfg.Node.ID) {
		if !n.calls.Holds(c.ID) {
			ids = append(ids, c.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	if err := n.store.Propose(ctx, state.EndCallsByID(ids, n.cfg.Node.ID, state.ReasonNodeLost, n.cfg.Node.ID, time.Now())); err != nil {
		return fmt.Errorf("end %d calls this node no longer holds: %w", len(ids), err)
	}
	n.log.Warn("ended calls this node owned before it restarted", "calls", len(ids), "reason", state.ReasonNodeLost)
	return nil
}
