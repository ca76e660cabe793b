package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// A follower that was away while the log was compacted catches up from a snapshot sent by the
// leader; nodes restart from their own snapshots; at most three snapshots stay on disk.
func TestSnapshotCatchUp(t *testing.T) {
	c := newTestCluster(t)
	small := func(cfg *Config) {
		cfg.SnapshotThreshold = 40
		cfg.SnapshotInterval = 50 * time.Millisecond
		cfg.trailingLogs = 5
	}
	a := c.start("a", small)
	must(t, a.n.WaitLeader(ctxT(t, 5*time.Second)))
	tok, err := a.n.JoinToken(time.Minute)
	must(t, err)
	for _, id := range []string{"b", "c"} {
		c.start(id, func(cfg *Config) { small(cfg); cfg.JoinToken = tok })
	}
	c.converge(5 * time.Second)
	c.kill("c")
	ctx := ctxT(t, 30*time.Second)
	for i := range 300 {
		must(t, c.running()[i%2].n.Propose(ctx, state.EndCall(state.CallRecord{Call: state.Call{ID: fmt.Sprintf("call-%d", i)}})))
	}
	lead := c.leader(5 * time.Second)
	waitFor(t, 5*time.Second, "a snapshot on the leader", func() bool { return lead.n.Stats().LastSnapshotIndex > 100 })
	c.restart("c")
	h := c.converge(10 * time.Second)
	cn := c.node("c").n
	must(t, cn.Consistent(ctx))
	if got := len(cn.State().Records(state.RecordQuery{Limit: 1000})); got != 300 {
		t.Fatalf("c has %d records, want 300", got)
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
	c.leader(10 * time.Second)
	for _, tn := range c.running() {
		must(t, tn.n.Consistent(ctx))
		if tn.n.State().Hash() != h {
			t.Fatalf("%s: state differs after restart", tn.id)
		}
	}
}
