package b2bua

import (
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
