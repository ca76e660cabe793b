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
