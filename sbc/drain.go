package sbc

import (
	"context"
	"time"
)

// Draining with rooms (issue #15 items 6, 7). A node that drains (SIGTERM) holds the flows of
// the rooms registered on it: another member can reach such a room only by handing the call to
// this node. So, before it refuses every call, a draining node waits (up to the drain timeout)
// until its rooms have a flow elsewhere, and meanwhile it still takes the calls handed to it
// for them (b2bua.Engine.DrainRooms); its registrar grants rooms that register meanwhile the
// shortest expiry (registrar.min_expires), so they come back soon, to wherever their DNS sends
// them then. Calls for a room whose flows are all on a member that is down get 480 with
// Retry-After at once (b2bua.Config.FlowNodeDown).

// roomsMovedPoll is how often a draining node looks whether its rooms have moved.
const roomsMovedPoll = 100 * time.Millisecond

// isDraining reports whether the node drains.
func (n *Node) isDraining() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.draining
}

// flowNodeDown reports whether the cluster member node cannot take calls now.
func (n *Node) flowNodeDown(node string) bool {
	return n.cluster != nil && n.cluster.MemberDown(node)
}

// flowNodeReached returns when this node last reached the cluster member node (now for this
// node, and for every node without a cluster).
func (n *Node) flowNodeReached(node string) time.Time {
	if n.cluster == nil {
		return time.Now()
	}
	return n.cluster.LastReached(node)
}

// catchUp returns once this node's state holds every write acknowledged before the call (at
// once without a cluster).
func (n *Node) catchUp(ctx context.Context) error {
	if n.cluster == nil {
		return nil
	}
	return n.cluster.Consistent(ctx)
}

// onlyFlowHere reports whether room's only usable flows are on this node.
func (n *Node) onlyFlowHere(room string) bool {
	here := false
	for _, b := range n.store.State().Bindings(room, time.Now()) {
		switch {
		case b.Node == n.cfg.Node.ID:
			here = true
		case !n.flowNodeDown(b.Node):
			return false
		}
	}
	return here
}

// roomsHere returns how many rooms have their only usable flows on this node.
func (n *Node) roomsHere() int {
	k := 0
	seen := map[string]bool{}
	for _, b := range n.store.State().AllBindings(time.Now()) {
		if b.Node != n.cfg.Node.ID || seen[b.Room] {
			continue
		}
		seen[b.Room] = true
		if n.onlyFlowHere(b.Room) {
			k++
		}
	}
	return k
}

// awaitRoomsMoved waits until no room has its only flow on this node, or ctx ends. A node
// alone in its cluster does not wait: its rooms have nowhere to go.
func (n *Node) awaitRoomsMoved(ctx context.Context) {
	if n.cluster == nil || len(n.cluster.Members()) < 2 {
		return
	}
	start := time.Now()
	t := time.NewTicker(roomsMovedPoll)
	defer t.Stop()
	for {
		k := n.roomsHere()
		if k == 0 {
			if time.Since(start) > roomsMovedPoll {
				n.log.Info("draining: the rooms registered here have moved", "waited", time.Since(start).Round(time.Millisecond))
			}
			return
		}
		select {
		case <-ctx.Done():
			n.log.Warn("draining: rooms still registered only here at the drain timeout", "rooms", k)
			return
		case <-t.C:
		}
	}
}
