package sbc

import (
	"context"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// Calls handed over on a rolling restart (issue #15). A draining node gives its answered calls
// to the other healthy members (state.HandOver) before it waits for the rest: each adopter
// re-INVITEs both legs of its calls toward its own relay, as it does for the calls of a lost
// node (b2bua adopt.go), and this node lets them go without a BYE when the command applies.
// Calls that cannot move (ringing, offerless, the room legs other nodes handed to this one)
// stay and are waited for by the drain as before.

// handOverCalls proposes the hand-over of this node's calls; it does nothing without another
// healthy member or without calls.
func (n *Node) handOverCalls(ctx context.Context) {
	if n.cluster == nil || n.calls == nil || len(n.store.State().CallsOf(n.cfg.Node.ID)) == 0 {
		return
	}
	adopters := n.otherHealthyMembers()
	if len(adopters) == 0 {
		return
	}
	calls := len(n.store.State().CallsOf(n.cfg.Node.ID))
	if err := n.store.Propose(ctx, state.HandOver(n.cfg.Node.ID, adopters, n.cfg.Node.ID, time.Now())); err != nil {
		n.log.Warn("draining: calls not handed over", "error", err)
		return
	}
	kept := len(n.store.State().CallsOf(n.cfg.Node.ID))
	if n.metrics != nil {
		n.metrics.CallsHandedOver(calls - kept)
	}
	n.log.Info("draining: answered calls handed over", "calls", calls, "kept", kept, "adopters", adopters)
}

// callAdopted counts how a call this node adopted turned out (portcullis_calls_adopted_total).
func (n *Node) callAdopted(result string) {
	if n.metrics != nil {
		n.metrics.CallAdopted(result)
	}
}
