package cluster

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// startThree bootstraps a, then joins b with a join token and c with a token too (the token is
// reusable until it expires), and waits for three healthy voters.
func startThree(t testing.TB, c *testCluster) { startN(t, c, 3) }

// startN starts nodes a, b, c, ... the same way.
func startN(t testing.TB, c *testCluster, n int) []string {
	t.Helper()
	a := c.start("a", nil)
	if err := a.n.WaitLeader(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	tok, err := a.n.JoinToken(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"a"}
	for i := 1; i < n; i++ {
		id := string(rune('a' + i))
		ids = append(ids, id)
		c.start(id, func(cfg *Config) {
			cfg.JoinToken = tok
			if i%2 == 0 {
				cfg.Join = []string{a.addr}
			}
		})
	}
	waitFor(t, 10*time.Second, "healthy voters", func() bool {
		ms := a.n.Members()
		if len(ms) != n {
			return false
		}
		for _, m := range ms {
			if m.Suffrage != "voter" || !m.Healthy {
				return false
			}
		}
		return true
	})
	formatsRecorded(t, c)
	return ids
}

// formatsRecorded waits until every running node's state records what all members apply (the
// leader writes it after its first round of pings), so no background write changes the state
// a test compares afterwards.
func formatsRecorded(t testing.TB, c *testCluster) {
	t.Helper()
	waitFor(t, 10*time.Second, "the cluster's log formats recorded", func() bool {
		for _, tn := range c.running() {
			if !tn.n.recordedOnce() {
				return false
			}
		}
		return true
	})
}

func TestClusterLifecycle(t *testing.T) {
	c := newTestCluster(t)
	startThree(t, c)
	ctx := ctxT(t, 60*time.Second)

	// A room written on a follower, a ban on another node: visible everywhere within 1 s.
	lead := c.leader(5 * time.Second)
	f := c.follower()
	if err := f.n.Propose(ctx, state.PutRoom(state.Room{Name: "boardroom", Inbound: state.InboundAllowlist})); err != nil {
		t.Fatalf("propose on follower: %v", err)
	}
	ban := netip.MustParsePrefix("198.51.100.66/32")
	var seen sync.Map // node -> time the ban was observed
	for _, tn := range c.running() {
		tn.n.State().Observe(func(cmd state.Command) {
			if cmd.Type == state.CmdPutBan {
				seen.LoadOrStore(tn.id, time.Now())
			}
		})
	}
	start := time.Now()
	if err := f.n.Propose(ctx, state.PutBan(state.Ban{Prefix: ban, Rule: "flood", Reason: "test",
		Until: time.Now().Add(time.Hour)})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "ban on every node", func() bool {
		for _, tn := range c.running() {
			if _, ok := tn.n.State().Ban(ban); !ok {
				return false
			}
		}
		return true
	})
	for _, tn := range c.running() {
		v, ok := seen.Load(tn.id)
		if !ok {
			t.Fatalf("%s: Observe did not fire for the ban", tn.id)
		}
		t.Logf("ban visible on %s after %s", tn.id, v.(time.Time).Sub(start))
	}
	c.converge(2 * time.Second)

	// Kill the leader hard: a new leader within 3 s, no acknowledged write lost.
	var acked []string
	for i := range 20 {
		name := fmt.Sprintf("room-%02d", i)
		if err := c.running()[i%3].n.Propose(ctx, state.PutRoom(state.Room{Name: name})); err != nil {
			t.Fatal(err)
		}
		acked = append(acked, name)
	}
	old := lead.id
	killed := time.Now()
	c.kill(old)
	nl := c.leader(3 * time.Second)
	t.Logf("new leader %s elected %s after killing %s", nl.id, time.Since(killed).Round(time.Millisecond), old)
	waitFor(t, 3*time.Second, "every acknowledged room on the survivors", func() bool {
		for _, tn := range c.running() {
			for _, name := range acked {
				if _, ok := tn.n.State().Room(name); !ok {
					return false
				}
			}
		}
		return true
	})
	for i := range 10 {
		name := fmt.Sprintf("after-%02d", i)
		if err := c.running()[i%2].n.Propose(ctx, state.PutRoom(state.Room{Name: name})); err != nil {
			t.Fatal(err)
		}
	}

	// The old leader restarts from disk, rejoins and catches up.
	c.restart(old)
	h := c.converge(10 * time.Second)
	if _, ok := c.node(old).n.State().Room("after-09"); !ok {
		t.Fatal("restarted node did not catch up")
	}

	// Remove a follower (asked on another follower: forwarded to the leader).
	lead = c.leader(5 * time.Second)
	var victim, asker *testNode
	for _, tn := range c.running() {
		if tn.id != lead.id {
			if victim == nil {
				victim = tn
			} else {
				asker = tn
			}
		}
	}
	if err := victim.n.Propose(ctx, state.PutBinding(state.Binding{Room: "boardroom", Contact: "sip:x@victim",
		Node: victim.id, Expires: time.Now().Add(time.Hour)})); err != nil {
		t.Fatal(err)
	}
	if err := asker.n.Remove(ctx, victim.id); err != nil {
		t.Fatalf("remove %s via %s: %v", victim.id, asker.id, err)
	}
	waitFor(t, 2*time.Second, "two members", func() bool { return len(lead.n.Members()) == 2 })
	if len(lead.n.State().Bindings("boardroom", time.Now())) != 0 {
		t.Fatal("removed node's bindings remain")
	}
	c.kill(victim.id)
	c.forget(victim.id)
	if err := asker.n.Propose(ctx, state.PutRoom(state.Room{Name: "two-left"})); err != nil {
		t.Fatal(err)
	}

	// Restart every node from disk: same state.
	h = c.converge(5 * time.Second)
	for _, tn := range c.running() {
		c.kill(tn.id)
	}
	for _, tn := range c.all() {
		c.restart(tn.id)
	}
	c.leader(10 * time.Second)
	for _, tn := range c.running() {
		if err := tn.n.Consistent(ctx); err != nil {
			t.Fatalf("%s: consistent: %v", tn.id, err)
		}
		if got := tn.n.State().Hash(); got != h {
			t.Fatalf("%s: state after full restart %s, want %s", tn.id, got, h)
		}
	}
}
