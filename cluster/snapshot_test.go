package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/testutil"
)

// A follower that was away while the log was compacted catches up from a snapshot sent by the
// leader; nodes restart from their own snapshots; at most three snapshots stay on disk.
//
// On a loaded machine (-race, 2 cores, other packages' tests) a write forwarded by a follower
// may time out after the leader took it, or meet a leader change: its outcome is unknown. The
// writes are rooms, which are idempotent, so they are sent again and the count stays exact (call
// records are not: the test failed on the unknown outcome, or counted a record twice), and every
// wait is bounded by testutil.Wait rather than a few seconds.
func TestSnapshotCatchUp(t *testing.T) {
	c := newTestCluster(t)
	small := func(cfg *Config) {
		cfg.SnapshotThreshold = 40
		cfg.SnapshotInterval = 50 * time.Millisecond
		cfg.trailingLogs = 5
	}
	a := c.start("a", small)
	must(t, a.n.WaitLeader(ctxT(t, testutil.Wait)))
	tok, err := a.n.JoinToken(time.Minute)
	must(t, err)
	for _, id := range []string{"b", "c"} {
		c.start(id, func(cfg *Config) { small(cfg); cfg.JoinToken = tok })
	}
	c.converge(testutil.Wait)
	c.kill("c")
	for i := range 300 {
		proposeUntilApplied(t, c.running()[i%2].n, state.PutRoom(state.Room{Name: fmt.Sprintf("room-%d", i)}))
	}
	lead := c.leader(testutil.Wait)
	waitFor(t, testutil.Wait, "a snapshot on the leader", func() bool { return lead.n.Stats().LastSnapshotIndex > 100 })
	c.restart("c")
	h := c.converge(testutil.Wait)
	cn := c.node("c").n
	consistent(t, cn)
	if got := cn.State().Counts().Rooms; got != 300 {
		t.Fatalf("c has %d rooms, want 300", got)
	}
	snaps, _ := os.ReadDir(filepath.Join(c.node("a").cfg.DataDir, raftDir, "snapshots"))
	if len(snaps) == 0 || len(snaps) > snapshotsKept {
		t.Fatalf("%d snapshots on disk, want 1..%d", len(snaps), snapshotsKept)
	}
	// Restart everyone: state comes back from snapshot + log.
	for _, tn := range c.running() {
		c.kill(tn.id)
	}
	for _, tn := range c.all() {
		c.restart(tn.id)
	}
	c.leader(testutil.Wait)
	for _, tn := range c.running() {
		consistent(t, tn.n)
		if tn.n.State().Hash() != h {
			t.Fatalf("%s: state differs after restart", tn.id)
		}
	}
}

// proposeUntilApplied proposes an idempotent command until it is applied, sending it again
// after a refusal (no leader) or an unknown outcome.
func proposeUntilApplied(t *testing.T, n *Node, cmd state.Command) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := n.Propose(context.Background(), cmd) // bounded by ApplyTimeout
		if err == nil {
			return
		}
		if !isAny(err, ErrNoLeader, ErrOutcomeUnknown) || time.Now().After(deadline) {
			t.Fatalf("propose %s: %v", cmd.Type, err)
		}
		t.Logf("propose %s: %v; sending it again", cmd.Type, err)
		time.Sleep(50 * time.Millisecond) // a pause between tries, not an assert
	}
}

// consistent waits for a consistent read on n to succeed (one is bounded by ApplyTimeout).
func consistent(t *testing.T, n *Node) {
	t.Helper()
	var err error
	waitFor(t, 60*time.Second, "a consistent read", func() bool {
		if err = n.Consistent(context.Background()); err != nil {
			t.Logf("consistent read: %v", err)
		}
		return err == nil
	})
}
