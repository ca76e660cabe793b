package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// An unknown command marked ignorable (a newer binary's optional record) is skipped; an unknown
// command without the bit stops every node that meets it rather than let state diverge.
func TestUnknownCommands(t *testing.T) {
	c := newTestCluster(t)
	startThree(t, c)
	ctx := ctxT(t, 30*time.Second)
	f := c.follower()
	if err := f.n.Propose(ctx, state.PutRoom(state.Room{Name: "r1"})); err != nil {
		t.Fatal(err)
	}
	h := c.converge(5 * time.Second)

	skip := state.Command{Type: state.Ignorable | 0x70, Version: 1, Payload: []byte(`{"future":true}`)}
	if err := f.n.Propose(ctx, skip); err != nil {
		t.Fatalf("ignorable unknown command: %v", err)
	}
	newer := state.Command{Type: state.CmdAudit, Version: 9, Payload: []byte(`{}`)} // ignorable, newer version
	if err := f.n.Propose(ctx, newer); err != nil {
		t.Fatalf("ignorable newer command: %v", err)
	}
	if got := c.converge(5 * time.Second); got != h {
		t.Fatal("an ignorable command changed the state")
	}
	for _, tn := range c.running() {
		if !tn.n.Healthy() {
			t.Fatalf("%s unhealthy after ignorable commands", tn.id)
		}
	}

	fatal := state.Command{Type: 0x70, Version: 1, Payload: []byte(`{}`)}
	err := f.n.Propose(ctx, fatal)
	if !errors.Is(err, ErrHalted) && !errors.Is(err, ErrClosed) && !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("fatal command: got %v, want ErrHalted", err)
	}
	t.Logf("proposer got: %v", err)
	halted := func(tn *testNode) bool {
		select {
		case <-tn.n.Done():
			if !errors.Is(tn.n.Err(), ErrHalted) || !errors.Is(tn.n.Err(), state.ErrUnknownCommand) {
				t.Fatalf("%s: Err() = %v, want ErrHalted wrapping state.ErrUnknownCommand", tn.id, tn.n.Err())
			}
			return true
		default:
			return false
		}
	}
	// Every node that applies the entry halts. (A halted leader keeps Raft up for one heartbeat
	// timeout so the followers learn the entry is committed.)
	waitFor(t, 5*time.Second, "every node to halt", func() bool {
		for _, tn := range c.running() {
			if !halted(tn) {
				return false
			}
		}
		return true
	})
	for _, tn := range c.running() {
		if tn.n.Healthy() {
			t.Fatalf("%s healthy after halting", tn.id)
		}
		if err := tn.n.Propose(ctx, state.PutRoom(state.Room{Name: "after"})); !errors.Is(err, ErrHalted) {
			t.Fatalf("%s: write after halt: %v", tn.id, err)
		}
		if _, ok := tn.n.State().Room("r1"); !ok {
			t.Fatalf("%s lost state", tn.id)
		}
	}
	// Restarted with the same binary, the nodes meet the same entry and halt again.
	for _, tn := range c.running() {
		c.kill(tn.id)
	}
	for _, tn := range c.all() {
		c.restart(tn.id)
	}
	waitFor(t, 10*time.Second, "every restarted node to halt again", func() bool {
		for _, tn := range c.running() {
			if !halted(tn) {
				return false
			}
		}
		return true
	})
}

// The FSM alone: batches, responses, snapshot round trip.
func TestFSMSnapshotRoundTrip(t *testing.T) {
	st := state.New()
	f := newFSM(st, testLogger(t), nil)
	var logs []*raft.Log
	for i := range 100 {
		logs = append(logs, &raft.Log{Index: uint64(i + 1), Type: raft.LogCommand,
			Data: state.PutRoom(state.Room{Name: fmt.Sprintf("r%d", i)}).Encode()})
	}
	logs = append(logs, &raft.Log{Index: 101, Type: raft.LogCommand, Data: state.DeleteRoom("nope").Encode()})
	res := f.ApplyBatch(logs)
	if len(res) != len(logs) {
		t.Fatal("response count")
	}
	if res[0] != nil || !errors.Is(res[100].(error), state.ErrNotFound) {
		t.Fatalf("responses: %v %v", res[0], res[100])
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, snap.(*fsmSnapshot).frozen, snap.(*fsmSnapshot).lastCmd); err != nil {
		t.Fatal(err)
	}
	f2 := newFSM(state.New(), testLogger(t), nil)
	if err := f2.Restore(nopCloser{&buf}); err != nil {
		t.Fatal(err)
	}
	if f2.st.Hash() != st.Hash() || f2.lastCmd.Load() != 101 {
		t.Fatalf("restore: hash or index differ (index %d)", f2.lastCmd.Load())
	}
	if err := f2.Restore(nopCloser{bytes.NewBufferString("garbage!!!!!!!!")}); !errors.Is(err, state.ErrBadSnapshot) {
		t.Fatalf("garbage snapshot: %v", err)
	}
}

type nopCloser struct{ *bytes.Buffer }

func (nopCloser) Close() error { return nil }
