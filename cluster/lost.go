package cluster

import (
	"context"
	"time"

	"github.com/hashicorp/raft"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// Lost members. The leader pings every member (pingMembers); a member it has not reached for
// Config.NodeLostAfter is lost: the leader gives the answered calls that member owned to the
// members it reaches (state.NodeLost: they adopt them) and ends the others in the state
// (reason "node lost"), which frees their rooms and writes their records,
// and every node that holds the other leg of such a call ends it too (it observes the
// command). A member is declared lost once per absence and per leadership; when it answers
// again it may be declared again later. A new leader starts counting from its election, so a
// member that was already gone is declared NodeLostAfter after the election; but the leader it
// replaces counts from when this node last heard from it as a follower (the old leader's death
// is why there was an election), so the calls of a dead leader move about as soon as a dead
// member's, never sooner than one ping round after the election.

// lostCheckEvery is how often the leader looks for lost members.
const lostCheckEvery = 200 * time.Millisecond

// lostTracker is the leader's bookkeeping; guarded by Node.healthMu.
type lostTracker struct {
	since    time.Time // this leadership began: members never reached count from it
	previous string    // the leader this node followed before, heard from at heard
	heard    time.Time
	seen     map[string]time.Time // member -> when this leader first saw it in the configuration
	declared map[string]time.Time // member -> when it was declared lost
}

func (t *lostTracker) reset(now time.Time) {
	t.since = now
	t.previous, t.heard = "", time.Time{}
	t.seen = map[string]time.Time{}
	t.declared = map[string]time.Time{}
}

// pingInterval is how often the leader pings the members: every second, or often enough to
// see a member three times within NodeLostAfter.
func (n *Node) pingInterval() time.Duration {
	return min(pingEvery, n.cfg.NodeLostAfter/3)
}

// lostSweep declares the members the leader has not reached for NodeLostAfter lost.
func (n *Node) lostSweep(ctx context.Context) {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	now := time.Now()
	var lost []string
	adopters := []string{n.cfg.NodeID} // who may adopt the lost members' calls (state.NodeLost)
	n.healthMu.Lock()
	if n.lost.declared == nil {
		n.lost.reset(now)
	}
	for _, s := range f.Configuration().Servers {
		id := string(s.ID)
		if s.ID == raft.ServerID(n.cfg.NodeID) {
			continue
		}
		// a member never reached counts from this leadership, or from when it joined; the
		// previous leader from when this node last heard from it
		seen, ok := n.lost.seen[id]
		if !ok {
			seen = now
			n.lost.seen[id] = now
		}
		last := latest(n.contact[id], n.lost.since, seen)
		if n.fromPreviousLeader(id, now) {
			last = latest(n.contact[id], n.lost.heard)
		}
		at, declared := n.lost.declared[id]
		switch {
		case declared && last.After(at):
			delete(n.lost.declared, id) // it answers again
		case !declared && now.Sub(last) >= n.cfg.NodeLostAfter:
			lost = append(lost, id)
		case !declared && now.Sub(n.contact[id]) < n.cfg.NodeLostAfter:
			adopters = append(adopters, id)
		}
	}
	n.healthMu.Unlock()
	for _, id := range lost {
		calls := len(n.st.CallsOf(id))
		err := n.Propose(ctx, state.NodeLost(id, adopters, state.ReasonNodeLost, n.cfg.NodeID, now))
		if err != nil {
			if ctx.Err() == nil {
				n.log.Warn("member lost: ending its calls failed; will retry", "member", id, "error", err)
			}
			continue
		}
		n.healthMu.Lock()
		if n.lost.declared != nil {
			n.lost.declared[id] = now
		}
		n.healthMu.Unlock()
		n.log.Warn("member lost: its calls were adopted or ended", "member", id, "calls", calls, "adopters", adopters,
			"unreachable_for", n.cfg.NodeLostAfter)
	}
}

// fromPreviousLeader reports whether member id's absence counts from when this node last heard
// from it as the leader it followed: only for that leader, only when that contact is recent (it
// led until its absence caused this election; an older one is a stale memory, e.g. a node
// elected again without following anyone between), and not before one ping round of this
// leadership has had time to reach it. Guarded by healthMu.
func (n *Node) fromPreviousLeader(id string, now time.Time) bool {
	t := &n.lost
	return id == t.previous && !t.heard.IsZero() && t.since.Sub(t.heard) < n.cfg.NodeLostAfter &&
		now.Sub(t.since) >= n.pingInterval()
}

// latest returns the latest of ts.
func latest(ts ...time.Time) time.Time {
	var l time.Time
	for _, t := range ts {
		if t.After(l) {
			l = t
		}
	}
	return l
}
