package b2bua

import (
	"context"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Rooms whose flow is on a node that cannot take calls (issue #15 items 6, 7).
//
// A call for a room is handed over the internal trunk to the member that holds the room's
// flow. When that member is dead (Config.FlowNodeDown: this node has not reached it for the
// cluster's node_lost_after), the INVITE would go unanswered and the caller would get a 408
// after 32 s: such flows are skipped, and a room left with none gets 480 with Retry-After at
// once. A draining member keeps taking the calls handed to it for its rooms while they have no
// flow elsewhere (DrainRooms), so a rolling restart loses no call.

// flowDownRetryAfter is the Retry-After (seconds) of a 480 for a room whose flows are all on
// members that are down: about when a room re-registers elsewhere.
const flowDownRetryAfter = "30"

// flowNodeDown reports whether the member node cannot take calls now.
func (e *Engine) flowNodeDown(node string) bool {
	return e.cfg.FlowNodeDown != nil && e.cfg.FlowNodeDown(node)
}

// unavailable is the 480 for a room with no flow that can take the call; flowsDown adds a
// Retry-After (the room has flows, on members that are down).
func unavailable(req *sip.Request, flowsDown bool) *sip.Response {
	res := sip.NewResponseFromRequest(req, 480, "Temporarily Unavailable", nil)
	if flowsDown {
		res.AppendHeader(sip.NewHeader("Retry-After", flowDownRetryAfter))
	}
	return res
}

// DrainRooms starts draining: new calls are refused with 503, except calls handed over the
// internal trunk for a room keep reports true for (its flows are all on this node, so no other
// member can reach it). Drain ends that exception. keep must not call the engine.
func (e *Engine) DrainRooms(keep func(room string) bool) {
	e.mu.Lock()
	e.draining, e.keepRoom = true, keep
	e.mu.Unlock()
}

// The detection window (issue #15 item 2). Until a dead member is seen down (node_lost_after),
// calls for rooms whose flow it holds are still handed to it, and the caller waited for Timer
// B (32 s) and a 408. A member answers a call handed to it with 100 at once: a branch over the
// internal trunk that has heard nothing for TrunkTimeout, to a member that has not answered
// the cluster's pings for as long either, is given up on. The call goes on with the room's
// next flow, or the caller gets 480 with Retry-After, as for a member already seen down.

// silentAfter returns how long branch target t may say nothing at all (not even 100) before
// it is given up on, and whether it may be given up on at all.
func (e *Engine) silentAfter(t target) (time.Duration, bool) {
	switch {
	case t.trunk && e.cfg.FlowNodeReached != nil:
		return e.cfg.TrunkTimeout, true
	case len(t.alt) > 0:
		// TargetTimeout, but within the first half of the ring time: the next flow must ring too
		return min(e.cfg.TargetTimeout, e.cfg.RingTimeout/2), true
	}
	return 0, false
}

// stillSilent reports, when t's silence timer fires, how much longer to wait (0: give up now).
// A member that answered a ping within the last TrunkTimeout is alive and only slow: wait
// until it has been quiet that long.
func (e *Engine) stillSilent(t target) time.Duration {
	if !t.trunk || e.cfg.FlowNodeReached == nil {
		return 0
	}
	quiet := time.Since(e.cfg.FlowNodeReached(t.node))
	if quiet >= e.cfg.TrunkTimeout {
		return 0
	}
	return e.cfg.TrunkTimeout - quiet
}

// failFlowDown answers the caller 480 with Retry-After: every branch went to members that
// said nothing (dead, frozen, cut off).
func (c *call) failFlowDown() {
	res := c.responseA(480, ReasonPhrase(480), nil)
	res.AppendHeader(sip.NewHeader("Retry-After", flowDownRetryAfter))
	respond(c.atx, res)
	c.finish(480, "flow node not answering")
}

// Rooms that move (issue #15: rolling restarts). A room that registers again through another
// node (its node drains, or its DNS sends it elsewhere) moves its flow there. For a moment the
// nodes' states differ: a node that has not yet applied the move (the node the room moves to
// among them: its caller-facing side may take a call while the REGISTER's write is on its way)
// hands a call to the room's old node, which has applied it and holds no flow for the room any
// more. That node hands the call on, once, to where its state says the room is now (back to the
// sender, possibly), rather than answer 480 (17 calls of 300 failed with a room moving every
// 150 ms). The INVITE handed on carries RelayHeader (never copied from a caller: passHeaders):
// a node does not hand on a call that was handed on already, so two nodes whose states disagree
// cannot pass a call back and forth.

// catchUpWithin bounds the wait for this node's state to catch up (a Raft round trip).
const catchUpWithin = time.Second

// RelayHeader marks a call handed on by a node the room's flow had left.
const RelayHeader = "X-Portcullis-Relayed"

// movedTargets returns where a call handed here over the trunk for room goes when this node's
// state shows no flow of the room here: once this node has caught up with the cluster (the
// room may just have registered here), its flows here, or else its flows on the other
// members, the one that handed the call over too.
func (e *Engine) movedTargets(req *sip.Request, room string) ([]target, int) {
	if e.cfg.CatchUp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), catchUpWithin)
		err := e.cfg.CatchUp(ctx)
		cancel()
		if err == nil {
			if ts, down := e.targets(room, true); len(ts) > 0 {
				return ts, down
			}
		}
	}
	if req.GetHeader(RelayHeader) != nil {
		return nil, 0
	}
	ts, down := e.targets(room, false)
	var out []target
	for _, t := range ts {
		if !t.trunk {
			continue
		}
		t.relay = true
		alt := t.alt[:0:0]
		for _, a := range t.alt {
			if a.trunk {
				a.relay = true
				alt = append(alt, a)
			}
		}
		t.alt = alt
		out = append(out, t)
	}
	return out, down
}
