package cluster

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// MemberState is a member's role as far as this node knows.
type MemberState string

// Member states.
const (
	StateLeader    MemberState = "leader"
	StateFollower  MemberState = "follower"
	StateCandidate MemberState = "candidate"
	StateUnknown   MemberState = "unknown"
)

// Member is one server in the Raft configuration.
type Member struct {
	ID       string      `json:"id"`
	Address  string      `json:"address"`
	Suffrage string      `json:"suffrage"` // voter, nonvoter, staging
	State    MemberState `json:"state"`
	// Healthy: the leader reached it within the last few seconds (the leader itself: always).
	Healthy bool `json:"healthy"`
	// LastContact is when the leader last reached it (zero if never or unknown).
	LastContact time.Time `json:"last_contact,omitzero"`
	// ClockOffset is its clock minus the leader's, measured by the leader's last ping (within
	// half a round trip; 0 on the leader and when unknown).
	ClockOffset time.Duration `json:"clock_offset,omitempty"`
}

// Members returns the members as the leader sees them (asked over RPC from a follower), or
// this node's own view when no leader answers within a second.
func (n *Node) Members() []Member {
	if n.stopped() == nil && n.raft.State() != raft.Leader {
		ctx, cancel := context.WithTimeout(n.ctx, time.Second)
		defer cancel()
		if resp, err := n.callLeader(ctx, &rpcRequest{Op: opMembers}); err == nil && resp.Err == nil {
			return resp.Members
		}
	}
	return n.localMembers()
}

func (n *Node) localMembers() []Member {
	if n.stopped() != nil {
		return nil
	}
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	leaderAddr, leaderID := n.raft.LeaderWithID()
	isLeader := n.raft.State() == raft.Leader
	stale := 3 * pingEvery
	n.healthMu.Lock()
	defer n.healthMu.Unlock()
	var out []Member
	for _, s := range f.Configuration().Servers {
		m := Member{ID: string(s.ID), Address: string(s.Address), Suffrage: suffrage(s.Suffrage), State: StateUnknown}
		switch {
		case s.ID == raft.ServerID(n.cfg.NodeID):
			m.State = raftState(n.raft.State())
			m.Healthy = n.Healthy()
			if isLeader {
				m.LastContact = time.Now()
			} else {
				m.LastContact = n.raft.LastContact()
			}
		case s.ID == leaderID && leaderAddr != "":
			m.State = StateLeader
			m.LastContact = n.raft.LastContact()
			m.Healthy = time.Since(m.LastContact) < stale
		case isLeader:
			m.State = StateFollower
			m.LastContact = n.contact[string(s.ID)]
			m.ClockOffset = n.offsets[string(s.ID)]
			m.Healthy = time.Since(m.LastContact) < stale
			if !m.Healthy {
				m.State = StateUnknown
			}
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out
}

func suffrage(s raft.ServerSuffrage) string {
	switch s {
	case raft.Voter:
		return "voter"
	case raft.Nonvoter:
		return "nonvoter"
	}
	return "staging"
}

func raftState(s raft.RaftState) MemberState {
	switch s {
	case raft.Leader:
		return StateLeader
	case raft.Follower:
		return StateFollower
	case raft.Candidate:
		return StateCandidate
	}
	return StateUnknown
}

// pingMembers is the leader's health probe of every other member.
func (n *Node) pingMembers(ctx context.Context) {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	// in parallel: a member that does not answer must not delay the others' pings (and make
	// them look lost)
	var wg sync.WaitGroup
	for _, s := range f.Configuration().Servers {
		if s.ID == raft.ServerID(n.cfg.NodeID) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, n.pingInterval())
			sent := time.Now()
			resp, err := n.rpc.call(pctx, string(s.Address), &rpcRequest{Op: opPing, Formats: n.clusterFormats()})
			cancel()
			if err == nil {
				now := time.Now()
				n.healthMu.Lock()
				n.contact[string(s.ID)] = now
				if !resp.Time.IsZero() { // an older node does not send its clock
					// its clock minus ours at the middle of the round trip (NTP-style)
					n.offsets[string(s.ID)] = resp.Time.Sub(sent.Add(now.Sub(sent) / 2))
				}
				n.healthMu.Unlock()
				n.sawFormats(string(s.ID), resp.Formats)
			}
		}()
	}
	wg.Wait()
	n.updateFormats(f.Configuration().Servers)
}

// Leader returns the leader's ID and address, empty when none is known.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// Join adds the node id listening at addr as a voter (on the leader; forwarded from a
// follower). Joining an existing member with the same address is a no-op.
func (n *Node) Join(ctx context.Context, id, addr string) error {
	if id == "" || checkAdvertise(addr) != nil {
		return errf(ErrJoin, "bad member %q at %q", id, addr)
	}
	ctx, cancel := n.writeCtx(ctx)
	defer cancel()
	return n.leaderOp(ctx, &rpcRequest{Op: opJoin, ID: id, Addr: addr}, func() error {
		return n.addVoter(ctx, id, addr)
	})
}

// leaderOp runs local on the leader, or sends req to the leader.
func (n *Node) leaderOp(ctx context.Context, req *rpcRequest, local func() error) error {
	for {
		if n.raft.State() == raft.Leader {
			err := local()
			if !retryable(err) || ctx.Err() != nil {
				return err
			}
		}
		resp, err := n.callLeader(ctx, req)
		if err == nil {
			err = resp.Err.err()
		}
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return err
		}
	}
}

func (n *Node) addVoter(ctx context.Context, id, addr string) error {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == raft.ServerID(id) && s.Address == raft.ServerAddress(addr) && s.Suffrage == raft.Voter {
			return nil
		}
	}
	err := n.await(ctx, n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, time.Until(deadline(ctx))))
	if err != nil {
		if retryable(err) {
			return fmt.Errorf("%w: %w", ErrNotLeader, err)
		}
		return fmt.Errorf("%w: add %s at %s: %w", ErrJoin, id, addr, err)
	}
	n.log.Info("member added", "id", id, "address", addr)
	return nil
}

// Remove takes member id out of the cluster for good (decommission), drops the registrations
// whose flows it owned (state.DeleteNodeBindings) and ends the calls it still owned
// (state.EndNodeCalls). A removed node shuts down;
// to bring it back, wipe its data dir and join it again.
func (n *Node) Remove(ctx context.Context, id string) error {
	ctx, cancel := n.writeCtx(ctx)
	defer cancel()
	return n.leaderOp(ctx, &rpcRequest{Op: opRemove, ID: id}, func() error { return n.removeLocal(ctx, id) })
}

func (n *Node) removeLocal(ctx context.Context, id string) error {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	if !slices.ContainsFunc(f.Configuration().Servers, func(s raft.Server) bool { return s.ID == raft.ServerID(id) }) {
		return fmt.Errorf("%w: %q", ErrUnknownMember, id)
	}
	// Bindings and calls first: once the leader removes itself it can no longer write.
	errs := n.applyLocal(ctx, [][]byte{state.DeleteNodeBindings(id).Encode(),
		state.EndNodeCalls(id, state.ReasonNodeLost, n.cfg.NodeID, time.Now()).Encode()})
	for _, err := range errs {
		if err == nil {
			continue
		}
		if retryable(err) {
			return fmt.Errorf("%w: %w", ErrNotLeader, err)
		}
		return fmt.Errorf("cluster: remove %s: drop its bindings and calls: %w", id, err)
	}
	if err := n.await(ctx, n.raft.RemoveServer(raft.ServerID(id), 0, time.Until(deadline(ctx)))); err != nil {
		if retryable(err) {
			return fmt.Errorf("%w: %w", ErrNotLeader, err)
		}
		return fmt.Errorf("cluster: remove %s: %w", id, err)
	}
	n.log.Info("member removed", "id", id)
	return nil
}

// Leave stops this node cleanly, for a restart or an upgrade: it proposes what Enqueue still
// holds, hands leadership to another voter if it leads, and shuts down. It stays in the
// configuration, so the cluster counts it as a (temporarily absent) voter and it rejoins on its
// next start with no operator action; a rolling restart of a 3-node cluster never drops below
// quorum this way. To take a node out for good, use Decommission (or Remove from another node).
func (n *Node) Leave(ctx context.Context) error {
	if err := n.Flush(ctx); err != nil && n.stopped() == nil {
		n.log.Warn("leave: flushing queued commands", "error", err)
	}
	if n.stopped() == nil && n.raft.State() == raft.Leader && n.voters() > 1 {
		if err := n.await(ctx, n.raft.LeadershipTransfer()); err != nil {
			n.log.Warn("leave: leadership transfer failed; stopping anyway", "error", err)
		} else {
			n.log.Info("leadership transferred")
		}
	}
	return n.Close()
}

// Decommission removes this node from the configuration (dropping its bindings), then stops.
func (n *Node) Decommission(ctx context.Context) error {
	if err := n.Flush(ctx); err != nil && n.stopped() == nil {
		n.log.Warn("decommission: flushing queued commands", "error", err)
	}
	if n.raft.State() == raft.Leader && n.voters() > 1 {
		if err := n.await(ctx, n.raft.LeadershipTransfer()); err != nil {
			n.log.Warn("decommission: leadership transfer failed", "error", err)
		}
	}
	err := n.Remove(ctx, n.cfg.NodeID)
	_ = n.Close()
	return err
}

func (n *Node) voters() int {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	k := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			k++
		}
	}
	return k
}

// Stats are figures for metrics.
type Stats struct {
	State        MemberState
	Term         uint64
	LastIndex    uint64
	CommitIndex  uint64
	AppliedIndex uint64
	// LastApplyLatency is how long the last Propose (or enqueued batch) took.
	LastApplyLatency time.Duration
	// Peers is the number of other voters.
	Peers int
	// LastContact is the time since the leader was last heard from (0 on the leader).
	LastContact time.Duration
	// Proposed counts commands proposed through this node; Dropped those Enqueue dropped.
	Proposed, Dropped uint64
	// Queued is the number of commands waiting in the Enqueue queue.
	Queued int
	// LastSnapshotIndex is the index of the latest snapshot.
	LastSnapshotIndex uint64
}

// Stats returns the node's figures.
func (n *Node) Stats() Stats {
	s := Stats{State: StateUnknown, LastApplyLatency: time.Duration(n.lastApply.Load()),
		Proposed: n.proposed.Load(), Dropped: n.dropped.Load(), Queued: len(n.queue)}
	if n.stopped() != nil {
		return s
	}
	s.State = raftState(n.raft.State())
	s.Term = n.raft.CurrentTerm()
	s.LastIndex = n.raft.LastIndex()
	s.CommitIndex = n.raft.CommitIndex()
	s.AppliedIndex = n.raft.AppliedIndex()
	st := n.raft.Stats()
	s.Peers, _ = strconv.Atoi(st["num_peers"])
	s.LastSnapshotIndex, _ = strconv.ParseUint(st["last_snapshot_index"], 10, 64)
	if s.State != StateLeader {
		if lc := n.raft.LastContact(); !lc.IsZero() {
			s.LastContact = time.Since(lc)
		}
	}
	return s
}
