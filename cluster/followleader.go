package cluster

import (
	"context"
	"errors"
	"time"
)

// Forwarded writes follow leadership changes (issue #15 items 4 and 5).
//
// A write a follower forwards is sent in attempts: an attempt ends when the leader answers,
// when this node's view of the leader changes (the leader it sent to froze or was cut off and
// the others elected a new one), or after attemptTimeout. A write whose attempt ended without
// an answer is sent again to the leader of the moment while the caller's deadline lasts, when
// sending its commands twice is harmless: each is in a state.CmdOnce envelope the FSM applies
// once (once.go), or, in a cluster with older members, idempotent (every command but CmdEndCall
// and CmdAudit, which append a record each time). So a frozen leader costs about the election
// time, not the whole apply timeout.
//
// A write proposed on a follower (Propose) returns once this node's FSM has applied it too
// (the leader answers the log index of the write), so the caller reads its own write from the
// local State (a REGISTER answered by a follower lists the binding it just stored). That costs
// a follower's write the time until the leader tells it the commit: the leader appends a
// barrier when no newer entry would carry it (nudge.go), so about one more replication round
// rather than CommitTimeout; queued writes (Enqueue), which nobody reads back at once, do not
// wait.

// attemptTimeout bounds one forwarded attempt: long enough for a loaded leader to commit, short
// enough that a leader that stopped answering without losing its connections (frozen) is left
// before the caller's deadline.
func (n *Node) attemptTimeout() time.Duration {
	return min(max(4*n.cfg.HeartbeatTimeout, time.Second), n.cfg.ApplyTimeout)
}

// leaderWatchEvery is how often a forwarded attempt looks for a change of leader.
const leaderWatchEvery = 10 * time.Millisecond

// forwardApply sends batch to the leader in one attempt and, when it was applied and readOwn is
// set, waits until the local FSM has applied it as well.
func (n *Node) forwardApply(ctx context.Context, batch [][]byte, readOwn bool) (*rpcResponse, error) {
	resp, err := n.fwd.call(ctx, batch) // shares a request with concurrent writes (fwdbatch.go)
	if err != nil {
		return nil, err
	}
	if readOwn && resp.Index > 0 {
		select {
		case <-n.fsm.waitIndex(resp.Index):
		case <-ctx.Done():
			// Applied on the leader; this node is behind (its reads may not show it yet).
			n.log.Debug("forwarded write applied but not yet here", "index", resp.Index)
		}
	}
	return resp, nil
}

// cancelOnLeaderChange calls cancel when this node's view of the leader changes from what it
// is now (a new leader, or none: the followers stopped hearing from it). It returns a func
// that stops watching.
func (n *Node) cancelOnLeaderChange(ctx context.Context, cancel context.CancelFunc) func() {
	was, _ := n.raft.LeaderWithID()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(leaderWatchEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if now, _ := n.raft.LeaderWithID(); now != was {
					cancel()
					return
				}
			}
		}
	}()
	return func() { close(done) }
}

// resend reports whether a write that failed with err should be sent again: the caller's
// deadline has not passed, this node runs, and either no leader took it (ErrNoLeader) or its
// outcome is unknown and sending it again is harmless (an envelope the FSM applies once, or an
// idempotent command: once.go).
func (n *Node) resend(ctx context.Context, batch [][]byte, err error) bool {
	if ctx.Err() != nil || n.stopped() != nil {
		return false
	}
	if errors.Is(err, ErrNoLeader) {
		return true
	}
	if !errors.Is(err, ErrOutcomeUnknown) {
		return false
	}
	for _, b := range batch {
		if !repeatable(b) {
			return false
		}
	}
	return true
}
