package cluster

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
)

// Leadership: which node leads, the tasks that run only on the leader, and the last other
// leader this node followed (lost.go counts a dead leader's absence from it).

// watchLeadership follows Raft's leadership notifications.
func (n *Node) watchLeadership(ch <-chan bool) {
	for {
		select {
		case <-n.ctx.Done():
			n.setLeader(false)
			return
		case v := <-ch:
			n.setLeader(v)
		}
	}
}

// watchLeaders notes the last other node seen leading (followed).
func (n *Node) watchLeaders() {
	ch := make(chan raft.Observation, 8)
	o := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(o)
	defer n.raft.DeregisterObserver(o)
	for {
		select {
		case <-n.ctx.Done():
			return
		case ob := <-ch:
			if lo, ok := ob.Data.(raft.LeaderObservation); ok && lo.LeaderID != "" && string(lo.LeaderID) != n.cfg.NodeID {
				n.followed.Store(string(lo.LeaderID))
			}
		}
	}
}

func (n *Node) setLeader(v bool) {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	if v == (n.leaderCtx != nil) {
		return
	}
	if v {
		n.leaderCtx, n.leaderCancel = context.WithCancel(n.ctx)
		n.healthMu.Lock()
		clear(n.contact)
		clear(n.offsets)
		n.lost.reset(time.Now())
		if id, _ := n.followed.Load().(string); id != "" {
			n.lost.previous, n.lost.heard = id, n.raft.LastContact()
		}
		n.healthMu.Unlock()
		n.log.Info("this node is the leader", "term", n.raft.CurrentTerm())
	} else {
		n.leaderCancel()
		n.leaderCtx, n.leaderCancel = nil, nil
		n.log.Info("this node is no longer the leader")
	}
	close(n.leaderSig)
	n.leaderSig = make(chan struct{})
}

// leadership returns a context live while this node leads (nil if it does not) and a channel
// closed at the next change.
func (n *Node) leadership() (context.Context, <-chan struct{}) {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	return n.leaderCtx, n.leaderSig
}

// IsLeader reports whether this node is the leader now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// RunLeaderTask calls fn every interval while this node is the leader, until ctx ends or the
// node stops. fn's context is cancelled when leadership is lost. Use it for work exactly one
// node must do with its own clock (expiry sweeps, probes).
func (n *Node) RunLeaderTask(ctx context.Context, interval time.Duration, fn func(ctx context.Context)) {
	n.goTracked(func() {
		for {
			lctx, sig := n.leadership()
			if lctx == nil {
				select {
				case <-sig:
					continue
				case <-ctx.Done():
					return
				case <-n.ctx.Done():
					return
				}
			}
			tctx, cancel := context.WithCancel(ctx)
			stop := context.AfterFunc(lctx, cancel)
			t := time.NewTicker(interval)
			for tctx.Err() == nil {
				select {
				case <-t.C:
					fn(tctx)
				case <-tctx.Done():
				}
			}
			t.Stop()
			stop()
			cancel()
			if ctx.Err() != nil || n.ctx.Err() != nil {
				return
			}
		}
	})
}
