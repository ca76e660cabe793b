package cluster

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

func TestSingleNode(t *testing.T) {
	before := runtime.NumGoroutine()
	c := newTestCluster(t)
	a := c.start("a", nil)
	if err := a.n.WaitLeader(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 5*time.Second)
	if err := a.n.Propose(ctx, state.PutRoom(state.Room{Name: "boardroom", Inbound: state.InboundOpen})); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.n.State().Room("boardroom"); !ok {
		t.Fatal("room not applied")
	}
	err := a.n.Propose(ctx, state.DeleteRoom("nope"))
	if !isAny(err, state.ErrNotFound) {
		t.Fatalf("delete missing room: got %v, want state.ErrNotFound", err)
	}
	p := netip.MustParsePrefix("203.0.113.7/32")
	a.n.Enqueue(state.PutBan(state.Ban{Prefix: p, Rule: "test", Until: time.Now().Add(time.Hour)}))
	if err := a.n.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "enqueued ban", func() bool { _, ok := a.n.State().Ban(p); return ok })
	if err := a.n.Consistent(ctx); err != nil {
		t.Fatal(err)
	}
	h := a.n.State().Hash()
	c.kill("a")
	c.restart("a")
	if err := a.n.Consistent(ctx); err != nil {
		t.Fatal(err)
	}
	if got := a.n.State().Hash(); got != h {
		t.Fatalf("state after restart %s, want %s", got, h)
	}
	st := a.n.Stats()
	t.Logf("stats: %+v", st)
	c.kill("a")
	waitFor(t, 5*time.Second, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before+2 })
}

// With nothing but a data dir (and here a free port instead of 7000), Open bootstraps a
// one-node cluster, generating its CA; a restart keeps the recorded node ID.
func TestZeroConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Bind = freeAddr(t)
	cfg.Logger = testLogger(t)
	n, err := Open(ctxT(t, 10*time.Second), cfg)
	must(t, err)
	must(t, n.Propose(ctxT(t, 10*time.Second), state.PutRoom(state.Room{Name: "lobby"})))
	id := n.NodeID()
	must(t, n.Close())
	n, err = Open(ctxT(t, 10*time.Second), cfg)
	must(t, err)
	defer n.Close()
	if n.NodeID() != id {
		t.Fatalf("node id %q after restart, want %q", n.NodeID(), id)
	}
	must(t, n.Consistent(ctxT(t, 10*time.Second)))
	if _, ok := n.State().Room("lobby"); !ok {
		t.Fatal("room lost across restart")
	}
	if !n.Healthy() || len(n.Members()) != 1 || n.Stats().State != StateLeader {
		t.Fatalf("single node: healthy %v members %+v stats %+v", n.Healthy(), n.Members(), n.Stats())
	}
}
