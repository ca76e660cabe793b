package cluster

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// startThreeWith starts a, b, c like startThree; mod adjusts each node's config.
func startThreeWith(t testing.TB, c *testCluster, mod func(id string, cfg *Config)) {
	t.Helper()
	startThreeVoters(t, c, mod)
	formatsRecorded(t, c)
}

// startThreeVoters is startThreeWith without waiting until every node recorded the log formats.
func startThreeVoters(t testing.TB, c *testCluster, mod func(id string, cfg *Config)) {
	t.Helper()
	a := c.start("a", func(cfg *Config) { mod("a", cfg) })
	if err := a.n.WaitLeader(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	tok, err := a.n.JoinToken(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"b", "c"} {
		c.start(id, func(cfg *Config) { cfg.JoinToken = tok; mod(id, cfg) })
	}
	waitFor(t, 10*time.Second, "healthy voters", func() bool {
		ms := a.n.Members()
		if len(ms) != 3 {
			return false
		}
		for _, m := range ms {
			if m.Suffrage != "voter" || !m.Healthy {
				return false
			}
		}
		return true
	})
}

// TestForwardedWriteReadsOwnWrite (issue #15 item 4): a write proposed on a follower is read
// back from that follower's State as soon as Propose returns, even when its FSM trails the
// leader. Before: Propose returned when the leader had applied it; the follower's State did
// not have it yet (a REGISTER answered there listed the bindings as they were before).
func TestForwardedWriteReadsOwnWrite(t *testing.T) {
	c := newTestCluster(t)
	var slow atomic.Bool
	startThreeWith(t, c, func(id string, cfg *Config) {
		if id == "b" {
			cfg.beforeApply = func() {
				if slow.Load() {
					time.Sleep(100 * time.Millisecond) // a loaded follower
				}
			}
		}
	})
	ctx := ctxT(t, 30*time.Second)
	l := c.leader(5 * time.Second)
	if l.id == "b" {
		if err := l.n.raft.LeadershipTransfer().Error(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "another leader", func() bool { return c.leader(5*time.Second).id != "b" })
	}
	b := c.node("b")
	slow.Store(true)
	for i := range 5 {
		name := "room-" + string(rune('a'+i))
		if err := b.n.Propose(ctx, state.PutRoom(state.Room{Name: name})); err != nil {
			t.Fatal(err)
		}
		if _, ok := b.n.State().Room(name); !ok {
			t.Fatalf("write %d: Propose on follower b returned before b's State had %s", i, name)
		}
	}
}

// TestForwardToFrozenLeader (issue #15 item 5): the leader freezes (SIGSTOP: connections stay
// open, nothing is answered). A write on a follower is forwarded, then sent again to the new
// leader once the others elected one; it succeeds well before the apply timeout. Before: the
// forwarded write waited the whole apply timeout on the frozen leader and failed.
func TestForwardToFrozenLeader(t *testing.T) {
	c := newTestCluster(t)
	startThreeWith(t, c, func(_ string, cfg *Config) { cfg.ApplyTimeout = 5 * time.Second })
	ctx := ctxT(t, 30*time.Second)
	old := c.leader(5 * time.Second)
	var f *testNode
	for _, tn := range c.running() {
		if tn.id != old.id {
			f = tn
			break
		}
	}
	// a forwarded write first, so the follower holds a pooled connection to the leader
	if err := f.n.Propose(ctx, state.PutRoom(state.Room{Name: "before"})); err != nil {
		t.Fatal(err)
	}
	c.net.freeze(old.addr)
	start := time.Now()
	err := f.n.Propose(ctx, state.PutBinding(state.Binding{Room: "before", Contact: "sip:r@192.0.2.1",
		Node: f.id, Expires: time.Now().Add(time.Hour)}))
	took := time.Since(start)
	if err != nil {
		t.Fatalf("write on %s with leader %s frozen: %v after %v", f.id, old.id, err, took)
	}
	t.Logf("write on follower %s with leader %s frozen succeeded after %v (apply timeout 5s)", f.id, old.id,
		took.Round(time.Millisecond))
	if took >= 4500*time.Millisecond {
		t.Fatalf("write took %v: it waited for the apply timeout", took)
	}
	if len(f.n.State().Bindings("before", time.Now())) != 1 {
		t.Fatal("the write is not in the follower's state")
	}
	// and once thawed, the old leader catches up and everyone agrees (no double apply harm)
	c.net.thaw()
	c.converge(15*time.Second, c.running()...)
}

// TestMemberDownOnEveryNode: every node, leader or not, sees a member that died as down after
// NodeLostAfter, and up again once it answers (signalling asks it before handing a call to
// the node that holds a room's flow).
func TestMemberDownOnEveryNode(t *testing.T) {
	c := newTestCluster(t)
	startThreeWith(t, c, func(_ string, cfg *Config) { cfg.NodeLostAfter = 600 * time.Millisecond })
	for _, tn := range c.running() {
		for _, other := range []string{"a", "b", "c"} {
			if tn.n.MemberDown(other) {
				t.Fatalf("%s sees %s down while all run", tn.id, other)
			}
		}
	}
	c.kill("c")
	start := time.Now()
	waitFor(t, 10*time.Second, "a and b to see c down", func() bool {
		return c.node("a").n.MemberDown("c") && c.node("b").n.MemberDown("c")
	})
	t.Logf("c seen down by a and b after %v (NodeLostAfter 600ms)", time.Since(start).Round(time.Millisecond))
	if c.node("a").n.MemberDown("b") || c.node("b").n.MemberDown("a") || c.node("a").n.MemberDown("nobody") {
		t.Fatal("a member that runs, or no member, seen down")
	}
	c.restart("c")
	waitFor(t, 10*time.Second, "a and b to see c up again", func() bool {
		return !c.node("a").n.MemberDown("c") && !c.node("b").n.MemberDown("c")
	})
}

// TestForwardedWriteCommitNudged: a follower learns that its forwarded write committed from
// the leader's next AppendEntries, and when nothing else is written the next one came only
// after CommitTimeout (20-40 ms by default; here so long that it never comes), so a write on a
// follower waited that long to be applied there. The leader now appends a barrier after
// answering it (nudge.go). Before: Propose on the follower waited until its deadline (the
// failure guard) and returned with the write not applied on the follower.
func TestForwardedWriteCommitNudged(t *testing.T) {
	c := newTestCluster(t)
	// the followers would learn that the formats were recorded only with a later entry
	startThreeVoters(t, c, func(_ string, cfg *Config) {
		cfg.CommitTimeout = time.Hour
		cfg.ApplyTimeout = time.Minute
	})
	l := c.leader(5 * time.Second)
	var f *testNode
	for _, tn := range c.running() {
		if tn.id != l.id {
			f = tn
			break
		}
	}
	for i := range 5 {
		ctx := ctxT(t, 30*time.Second)
		name := "nudged-" + string(rune('a'+i))
		if err := f.n.Propose(ctx, state.PutRoom(state.Room{Name: name})); err != nil {
			t.Fatal(err)
		}
		if _, ok := f.n.State().Room(name); !ok {
			t.Fatalf("write %d: Propose on follower %s returned before its State had %s", i, f.id, name)
		}
	}
}
