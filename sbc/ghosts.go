package sbc

import (
	"context"
	"fmt"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// Ghost calls: calls the replicated state lists as answered, owned by a node that no longer
// holds them. The cluster ends the calls of a lost node (cluster.Config.NodeLostAfter); this
// node, once it has caught up after a start, hands the calls the state says it owns (its
// previous process held them) to the other members to adopt, or ends them; and every node ends its own legs of calls the
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

// endOwnGhosts deals with the calls the state says this node owns but that it does not hold:
// after a restart, all of them (its previous process held them). A restart never revives a
// call, but a node restarted at once (by a supervisor, inside cluster.node_lost_after, before
// the leader could declare it lost) must not cost its calls either: they go to the other healthy
// members, which adopt them as they adopt a lost node's calls (state.NodeLost); the calls that
// cannot be adopted, or all of them when no other member is healthy, end with record "node lost".
func (n *Node) endOwnGhosts(ctx context.Context) error {
	owned := n.store.State().CallsOf(n.cfg.Node.ID)
	var ids []string
	for _, c := range owned {
		if !n.calls.Holds(c.ID) {
			ids = append(ids, c.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	id := n.cfg.Node.ID
	if adopters := n.ghostAdopters(ctx); len(adopters) > 0 && len(ids) == len(owned) {
		if err := n.store.Propose(ctx, state.NodeLost(id, adopters, state.ReasonNodeLost, id, time.Now())); err != nil {
			return fmt.Errorf("hand %d calls of the previous process to %v: %w", len(ids), adopters, err)
		}
		n.log.Warn("calls this node owned before it restarted handed to the other members to adopt", "calls", len(ids),
			"adopters", adopters)
		return nil
	}
	if err := n.store.Propose(ctx, state.EndCallsByID(ids, id, state.ReasonNodeLost, id, time.Now())); err != nil {
		return fmt.Errorf("end %d calls this node no longer holds: %w", len(ids), err)
	}
	n.log.Warn("ended calls this node owned before it restarted", "calls", len(ids), "reason", state.ReasonNodeLost)
	return nil
}

// otherHealthyMembers returns the cluster members other than this node that are healthy and
// not down: those that may adopt this node's calls.
func (n *Node) otherHealthyMembers() []string {
	if n.cluster == nil {
		return nil
	}
	var out []string
	for _, m := range n.cluster.Members() {
		if m.ID != n.cfg.Node.ID && m.Healthy && !n.flowNodeDown(m.ID) {
			out = append(out, m.ID)
		}
	}
	return out
}

// ghostAdopters returns the members that may adopt the calls of this node's previous process.
// A node restarted at once may be elected leader again before it has pinged anyone (it then
// knows no member healthy): it waits for one, up to cluster.node_lost_after.
func (n *Node) ghostAdopters(ctx context.Context) []string {
	if n.cluster == nil {
		return nil
	}
	deadline := time.Now().Add(time.Duration(n.cfg.Cluster.NodeLostAfter))
	for {
		if a := n.otherHealthyMembers(); len(a) > 0 {
			return a
		}
		if len(n.cluster.Members()) <= 1 || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}
