package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

func TestPartition(t *testing.T) {
	c := newTestCluster(t)
	startThree(t, c)
	ctx := ctxT(t, 60*time.Second)
	if err := c.running()[0].n.Propose(ctx, state.PutRoom(state.Room{Name: "before"})); err != nil {
		t.Fatal(err)
	}
	old := c.leader(5 * time.Second)
	var majority []*testNode
	var majAddrs, majIDs []string
	for _, tn := range c.running() {
		if tn.id != old.id {
			majority = append(majority, tn)
			majAddrs = append(majAddrs, tn.addr)
			majIDs = append(majIDs, tn.id)
		}
	}
	c.net.partition([]string{old.addr}, majAddrs)

	// The isolated leader cannot commit: it steps down and the write fails, clearly.
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err := old.n.Propose(wctx, state.PutRoom(state.Room{Name: "minority-1"}))
	cancel()
	if err == nil || !isAny(err, ErrNoLeader, ErrOutcomeUnknown) {
		t.Fatalf("write on isolated leader: got %v, want ErrNoLeader or ErrOutcomeUnknown", err)
	}
	t.Logf("isolated leader refuses: %v", err)

	// The majority elects a leader and keeps serving, from both of its nodes.
	nl := c.leader(3*time.Second, majIDs...)
	t.Logf("majority leader: %s", nl.id)
	for i, tn := range majority {
		if err := tn.n.Propose(ctx, state.PutRoom(state.Room{Name: "majority-" + string(rune('a'+i))})); err != nil {
			t.Fatalf("majority write on %s: %v", tn.id, err)
		}
	}

	// The minority node, now a follower with no leader, refuses with ErrNoLeader.
	wctx, cancel = context.WithTimeout(ctx, time.Second)
	err = old.n.Propose(wctx, state.PutRoom(state.Room{Name: "minority-2"}))
	cancel()
	if !errors.Is(err, ErrNoLeader) || !strings.Contains(err.Error(), "no leader") {
		t.Fatalf("write on minority follower: got %v, want ErrNoLeader", err)
	}
	t.Logf("minority follower refuses: %v", err)
	if err := old.n.Consistent(ctxT(t, 500*time.Millisecond)); err == nil {
		t.Fatal("consistent read on the minority side succeeded")
	}

	// A command queued on the minority side (a registration) waits for the partition to heal.
	queued := state.PutBinding(state.Binding{Room: "before", Contact: "sip:q@minority", Node: old.id,
		Expires: time.Now().Add(time.Hour)})
	old.n.Enqueue(queued)

	// Heal: everyone converges; the minority's writes never happened.
	c.net.heal()
	if err := old.n.Flush(ctx); err != nil {
		t.Fatalf("flush after heal: %v", err)
	}
	c.leader(5 * time.Second)
	c.converge(5 * time.Second)
	for _, tn := range c.running() {
		if err := tn.n.Consistent(ctx); err != nil {
			t.Fatalf("%s: %v", tn.id, err)
		}
		st := tn.n.State()
		for _, name := range []string{"before", "majority-a", "majority-b"} {
			if _, ok := st.Room(name); !ok {
				t.Fatalf("%s misses %s", tn.id, name)
			}
		}
		if len(st.Bindings("before", time.Now())) != 1 {
			t.Fatalf("%s misses the binding queued during the partition", tn.id)
		}
		for _, name := range []string{"minority-1", "minority-2"} {
			if _, ok := st.Room(name); ok {
				t.Fatalf("%s has %s, written on the minority side", tn.id, name)
			}
		}
	}
	c.converge(5 * time.Second)
}
