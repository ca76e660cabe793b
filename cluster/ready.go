package cluster

import (
	"context"
	"time"
)

// Readiness. A node that starts (or restarts) holds whatever its snapshot and local log give
// it, which may be far behind the cluster: bans, tokens, rooms and passwords written while it
// was away. It is ready only once it has applied the log up to the leader's commit index as of
// its start (a barrier on the leader: Consistent). Until then Healthy is false, so /readyz says
// 503 and the signalling layer refuses work instead of answering from a stale state.

// readyRetry is the pause between two attempts to catch up (no leader yet, leader changing).
const readyRetry = 100 * time.Millisecond

// catchUp runs from Open until the node has caught up once.
func (n *Node) catchUp() {
	start := time.Now()
	for {
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ApplyTimeout)
		err := n.Consistent(ctx)
		cancel()
		if err == nil {
			n.log.Info("caught up with the cluster log", "applied_index", n.fsm.lastCmd.Load(),
				"took", time.Since(start).Round(time.Millisecond))
			return
		}
		if n.stopped() != nil {
			return
		}
		select {
		case <-n.ctx.Done():
			return
		case <-n.ready:
			return
		case <-time.After(readyRetry):
		}
	}
}

// markReady records that the node has caught up (once).
func (n *Node) markReady() {
	n.readyOnce.Do(func() { close(n.ready) })
}

// Ready reports whether this node has caught up with the cluster's log since it started.
func (n *Node) Ready() bool {
	select {
	case <-n.ready:
		return true
	default:
		return false
	}
}

// WaitReady waits until the node has caught up with the cluster's log (see Ready), the node
// stops or ctx ends.
func (n *Node) WaitReady(ctx context.Context) error {
	select {
	case <-n.ready:
		return nil
	case <-n.done:
		return n.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}
