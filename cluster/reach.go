package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Members seen from every node. The leader's lost-member view (lost.go) lives on the leader
// only; signalling on any node needs to know, for each call, whether the member that holds a
// room's flow can take it (issue #15 item 6). So every node pings every other member at the
// leader's pace and MemberDown reports a member this node has not reached for NodeLostAfter,
// the same threshold at which the leader declares it lost and ends its calls. A member counts
// from when this node started or first saw it in the configuration; it is up again at its
// first answer.

// reachView is this node's view; guarded by its mutex.
type reachView struct {
	mu      sync.Mutex
	since   time.Time            // this node's pinger started
	seen    map[string]time.Time // member -> when first seen in the configuration
	contact map[string]time.Time // member -> last answer
}

// runReach pings the members until the node stops (started with the node).
func (n *Node) runReach() {
	n.reach.mu.Lock()
	n.reach.since = time.Now()
	n.reach.seen = map[string]time.Time{}
	n.reach.contact = map[string]time.Time{}
	n.reach.mu.Unlock()
	t := time.NewTicker(n.pingInterval())
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			n.pingReach(n.ctx)
		}
	}
}

func (n *Node) pingReach(ctx context.Context) {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	now := time.Now()
	members := map[string]bool{}
	var wg sync.WaitGroup
	for _, s := range f.Configuration().Servers {
		if s.ID == raft.ServerID(n.cfg.NodeID) {
			continue
		}
		id := string(s.ID)
		members[id] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, n.pingInterval())
			_, err := n.rpc.call(pctx, string(s.Address), &rpcRequest{Op: opPing})
			cancel()
			if err == nil {
				n.reach.mu.Lock()
				n.reach.contact[id] = time.Now()
				n.reach.mu.Unlock()
			}
		}()
	}
	n.reach.mu.Lock()
	for id := range members {
		if _, ok := n.reach.seen[id]; !ok {
			n.reach.seen[id] = now
		}
	}
	for id := range n.reach.seen {
		if !members[id] {
			delete(n.reach.seen, id)
			delete(n.reach.contact, id)
		}
	}
	n.reach.mu.Unlock()
	wg.Wait()
}

// MemberDown reports whether id is a member of the cluster that this node has not reached for
// NodeLostAfter (dead, frozen or cut off from here). It is false for this node, for an ID that
// is not a member and while this node has not been up for NodeLostAfter. Cheap: no I/O.
func (n *Node) MemberDown(id string) bool {
	if id == n.cfg.NodeID {
		return false
	}
	n.reach.mu.Lock()
	defer n.reach.mu.Unlock()
	seen, ok := n.reach.seen[id]
	if !ok {
		return false
	}
	return time.Since(latest(n.reach.since, seen, n.reach.contact[id])) >= n.cfg.NodeLostAfter
}

// LastReached returns when this node last reached member id (its last answer to a ping), or
// when it started watching it if it never answered. For this node itself it is now. Cheap: no
// I/O. Signalling asks it when the node holding a room's flow says nothing to a call handed to
// it: a member that answers pings is slow, not gone.
func (n *Node) LastReached(id string) time.Time {
	if id == n.cfg.NodeID {
		return time.Now()
	}
	n.reach.mu.Lock()
	defer n.reach.mu.Unlock()
	return latest(n.reach.since, n.reach.seen[id], n.reach.contact[id])
}
