package cluster

import (
	"sync"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// TestLostMemberCallsEnded: calls owned by a member that dies stay in the state forever
// unless the cluster ends them. With the default detection time (3 s) the leader declares the
// dead member lost, its calls leave the table on every survivor, the room is free again and
// each call has exactly one record "node lost". A restart of the dead member revives nothing.
func TestLostMemberCallsEnded(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the default detection time")
	}
	c := newTestCluster(t)
	startThree(t, c)
	ctx := ctxT(t, 60*time.Second)
	lead := c.leader(5 * time.Second)
	var victim *testNode
	for _, tn := range c.running() {
		if tn.id != lead.id {
			victim = tn
			break
		}
	}
	now := time.Now().UTC()
	for _, id := range []string{"c1", "c2"} {
		call := state.Call{ID: id, Room: "room-" + id, Node: victim.id, State: state.CallAnswered,
			Started: now, Answered: now, B: state.Leg{CallID: "b-" + id}}
		if err := lead.n.Propose(ctx, state.PutCall(call)); err != nil {
			t.Fatal(err)
		}
	}
	if err := lead.n.Propose(ctx, state.PutCall(state.Call{ID: "keep", Room: "room-keep", Node: lead.id,
		State: state.CallAnswered, Started: now})); err != nil {
		t.Fatal(err)
	}
	c.converge(5 * time.Second)
	var observed sync.Map // node -> time it saw the lost member's calls end
	for _, tn := range c.running() {
		if tn.id == victim.id {
			continue
		}
		tn.n.State().ObserveEnded(func(e state.Ended) {
			if e.Lost == victim.id && len(e.Records) == 2 {
				observed.LoadOrStore(tn.id, time.Now())
			}
		})
	}
	killed := time.Now()
	c.kill(victim.id)
	var survivors []*testNode
	waitFor(t, 20*time.Second, "the lost member's calls to end on every survivor", func() bool {
		survivors = c.running()
		for _, tn := range survivors {
			st := tn.n.State()
			if len(st.CallsOf(victim.id)) != 0 || st.RoomInCall("room-c1", "") {
				return false
			}
			if _, told := observed.Load(tn.id); !told {
				return false // the observers run just after the state changed
			}
		}
		return true
	})
	detected := time.Since(killed)
	for _, tn := range survivors {
		if at, ok := observed.Load(tn.id); ok {
			t.Logf("%s saw the calls of %s end %v after it died", tn.id, victim.id, at.(time.Time).Sub(killed).Round(time.Millisecond))
		} else {
			t.Fatalf("%s was not told which calls ended", tn.id)
		}
		recs := tn.n.State().Records(state.RecordQuery{EndReason: state.ReasonNodeLost})
		if len(recs) != 2 || recs[0].Node != victim.id || recs[0].Status != 200 {
			t.Fatalf("%s: records %+v, want 2 of %s with reason %q", tn.id, recs, victim.id, state.ReasonNodeLost)
		}
		if _, ok := tn.n.State().Call("keep"); !ok {
			t.Fatalf("%s: the leader's own call was ended", tn.id)
		}
	}
	t.Logf("calls of the dead member ended %v after it died (detection time %s)", detected.Round(time.Millisecond), DefaultNodeLostAfter)

	// The member comes back: nothing is revived, no record is written twice.
	c.restart(victim.id)
	c.converge(10 * time.Second)
	for _, tn := range c.running() {
		if n := len(tn.n.State().Records(state.RecordQuery{})); n != 2 {
			t.Fatalf("%s: %d records after the restart, want 2", tn.id, n)
		}
		if len(tn.n.State().CallsOf(victim.id)) != 0 {
			t.Fatalf("%s: calls revived", tn.id)
		}
	}
}

// TestRestartedFollowerNotReadyUntilCaughtUp: a follower that restarts while the cluster wrote
// on without it knows the leader at once (its first heartbeat), but its state lags until it
// has applied the backlog. It must not say it is healthy (/readyz) until then.
func TestRestartedFollowerNotReadyUntilCaughtUp(t *testing.T) {
	c := newTestCluster(t)
	startThree(t, c)
	ctx := ctxT(t, 60*time.Second)
	lead := c.leader(5 * time.Second)
	f := c.follower()
	c.kill(f.id)
	// the backlog: a room and a token the follower has never seen
	for i := range 50 {
		if err := lead.n.Propose(ctx, state.PutRoom(state.Room{Name: "room" + string(rune('a'+i%26)) + string(rune('a'+i/26))})); err != nil {
			t.Fatal(err)
		}
	}
	if err := lead.n.Propose(ctx, state.PutToken(state.Token{ID: "late", Hash: "00", Scope: state.ScopeAdmin})); err != nil {
		t.Fatal(err)
	}

	release := make(chan struct{})
	var once sync.Once
	releaseAll := func() { once.Do(func() { close(release) }) }
	t.Cleanup(releaseAll)
	tn := c.node(f.id)
	tn.cfg.beforeApply = func() { <-release } // the follower's FSM falls behind and stays there
	c.restart(f.id)
	fn := c.node(f.id).n
	waitFor(t, 10*time.Second, "the restarted follower to know the leader", func() bool {
		id, _ := fn.Leader()
		return id != ""
	})
	if _, ok := fn.State().Room("roomaa"); ok {
		t.Fatal("test setup: the follower already has the backlog")
	}
	// It knows a leader but has not caught up: not ready, not healthy, however long we look.
	for range 20 {
		if fn.Healthy() || fn.Ready() {
			t.Fatalf("healthy %v ready %v before applying the backlog", fn.Healthy(), fn.Ready())
		}
		time.Sleep(10 * time.Millisecond)
	}
	held := time.Now()
	releaseAll()
	if err := fn.WaitReady(ctxT(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	t.Logf("ready %v after the FSM was released", time.Since(held).Round(time.Millisecond))
	if !fn.Healthy() {
		t.Fatal("ready but not healthy")
	}
	for _, name := range []string{"roomaa", "roomxb"} {
		if _, ok := fn.State().Room(name); !ok {
			t.Fatalf("ready without room %s of the backlog", name)
		}
	}
	if len(fn.State().Tokens()) != 1 {
		t.Fatal("ready without the token of the backlog")
	}
}
