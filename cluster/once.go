package cluster

import (
	"crypto/rand"
	"encoding/binary"
	"slices"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// Writes applied once (issue #15 item 1). Every command this node proposes that would do harm
// if applied twice (a second call record or audit line, "not found" for a delete that worked,
// a call revived after another node ended it) leaves wrapped in a state.CmdOnce envelope with
// an id of its own, kept across every retry: the FSM applies each id once. So a write whose
// outcome is unknown (the leader took it, then died, froze or lost the reply) is sent again to
// the next leader whatever its kind, and its effect is once.
//
// Envelopes are written only when the whole cluster applies them (log formats: a follower
// wraps once the leader said so, the leader unwraps what it would otherwise send to an older
// member); until then a write with an unknown outcome is retried only when its kind is
// idempotent, as before.

// onceIDs makes envelope ids: a random prefix per process and a counter, unique across nodes
// and restarts without coordination.
type onceIDs struct {
	prefix [8]byte
	seq    atomic.Uint64
}

func newOnceIDs() *onceIDs {
	g := &onceIDs{}
	_, _ = rand.Read(g.prefix[:]) // crypto/rand.Read never fails (Go 1.24)
	return g
}

func (g *onceIDs) next() state.OnceID {
	var id state.OnceID
	copy(id[:8], g.prefix[:])
	binary.BigEndian.PutUint64(id[8:], g.seq.Add(1))
	return id
}

// commutes reports whether applying a command of type t twice, with any writes in between,
// leaves the state and the answer as applying it once: those are never wrapped.
func commutes(t state.CmdType) bool {
	switch t {
	case state.CmdExpire, state.CmdEndCalls, state.CmdSinkCursor, state.CmdSetTrunkKey,
		state.CmdDeleteNodeBindings, state.CmdClusterFormats:
		return true
	}
	return false
}

// idempotent reports whether applying a command of type t twice leaves the same state as
// applying it once, so a write with an unknown outcome that is not in an envelope may be
// retried (its answer may differ: a delete retried answers "not found").
func idempotent(t state.CmdType) bool {
	return t != state.CmdEndCall && t != state.CmdAudit
}

// repeatable reports whether the encoded command b may be sent again after an unknown outcome.
func repeatable(b []byte) bool {
	if _, ok := state.UnwrapOnce(b); ok {
		return true
	}
	return len(b) > 0 && idempotent(state.CmdType(b[0]))
}

// wrapsOnce reports whether this node may send envelopes: as leader when every member applies
// them, as follower when the leader last said so.
func (n *Node) wrapsOnce() bool {
	if n.raft.State() == raft.Leader {
		return n.clusterOnce()
	}
	return n.leaderFormat() >= formatsOnce
}

// leaderFormat is what this follower takes the cluster to apply: what the leader last said,
// or, until it has said anything (this node just restarted), what the state records for the
// members of the configuration now. Wrapping (encode) and sending (forLeader) both go by it:
// a write wrapped for a retry and then unwrapped before it left would be applied once per try.
func (n *Node) leaderFormat() int32 {
	if f := n.leaderFormats.Load(); f > 0 {
		return f
	}
	if f, members := n.st.ClusterFormats(); slices.Equal(members, n.servers()) {
		return int32(f)
	}
	return 0
}

// encode returns the wire form of cmds, each in an envelope with a fresh id when it needs one
// and the cluster applies envelopes. Retries send these same bytes.
func (n *Node) encode(cmds []state.Command) [][]byte {
	wrap := n.wrapsOnce()
	enc := make([][]byte, len(cmds))
	for i, c := range cmds {
		enc[i] = c.Encode()
		if wrap && !commutes(c.Type) {
			enc[i] = state.WrapOnce(n.onceIDs.next(), enc[i])
		}
	}
	return enc
}

// unwrapAll returns cmds with every envelope replaced by the command inside (for a member that
// does not apply envelopes). It copies cmds only when it changes one.
func unwrapAll(cmds [][]byte) [][]byte {
	out := cmds
	for i, b := range cmds {
		if inner, ok := state.UnwrapOnce(b); ok {
			if &out[0] == &cmds[0] {
				out = append([][]byte(nil), cmds...)
			}
			out[i] = inner
		}
	}
	return out
}

// onceKnown values: what this node learned from its own pings as leader.
const (
	onceUnknown int32 = iota // some member never answered this node
	onceAll                  // every member applies envelopes
	onceNotAll               // some member does not
)

// clusterOnce reports whether every member applies envelopes, as far as this leader knows: from
// its own pings when every member answered one, else from what the last leader that heard them
// all recorded in the state for the same members (a new leader whose first round of pings a
// dead member did not answer must not unwrap the envelopes of writes retried on it just after
// a failover: it would apply them twice).
func (n *Node) clusterOnce() bool {
	switch n.onceKnown.Load() {
	case onceAll:
		return true
	case onceNotAll:
		return false
	}
	return n.recordedOnce()
}

// recordedOnce reports whether the state records that every member applies envelopes, for the
// members of the configuration now.
func (n *Node) recordedOnce() bool {
	f, members := n.st.ClusterFormats()
	return f >= formatsOnce && slices.Equal(members, n.servers())
}

// heardFormats records what the leader said the cluster applies (in its ping, or its answer to
// a forwarded write).
func (n *Node) heardFormats(f int) { n.leaderFormats.Store(int32(f)) }

// recordFormats has the state record what every member applies once this leader heard it from
// them all and the state says otherwise.
func (n *Node) recordFormats(least int, servers []raft.Server) {
	ids := make([]string, 0, len(servers))
	for _, s := range servers {
		ids = append(ids, string(s.ID))
	}
	slices.Sort(ids)
	if f, members := n.st.ClusterFormats(); f == least && slices.Equal(members, ids) {
		return
	}
	n.Enqueue(state.SetClusterFormats(least, ids))
}

// servers returns the sorted IDs of the configuration's members.
func (n *Node) servers() []string {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	ids := make([]string, 0, len(f.Configuration().Servers))
	for _, s := range f.Configuration().Servers {
		ids = append(ids, string(s.ID))
	}
	slices.Sort(ids)
	return ids
}
