package guard

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// TestRoomLockAcrossSources: RoomAuthFailures failures for one room from as many sources
// (each far under AuthFailures) lock the room's digest; the room's registered flow is exempt;
// the lock ends after RoomLockTime and the next one lasts twice as long.
func TestRoomLockAcrossSources(t *testing.T) {
	g, st, clk := newTestGuard(t, nil)
	flow := netip.MustParseAddrPort("198.51.100.30:5060")
	if err := st.Propose(context.Background(), state.PutBinding(state.Binding{Room: "boardroom", Contact: "sip:b@x",
		Source: flow.String(), Node: "node-1", Expires: clk.Now().Add(time.Hour)})); err != nil {
		t.Fatal(err)
	}
	guess := func() {
		for i := 1; i <= g.cfg.RoomAuthFailures; i++ {
			src := netip.MustParseAddrPort(fmt.Sprintf("203.0.113.%d:5060", i))
			if g.RoomLocked("boardroom", src, "UDP") {
				t.Fatalf("locked after %d failures", i-1)
			}
			g.AuthFailed(src, "boardroom", "UDP")
		}
	}
	guess()
	stranger := netip.MustParseAddrPort("192.0.2.99:5060")
	if !g.RoomLocked("boardroom", stranger, "UDP") {
		t.Fatal("the room is not locked")
	}
	if g.RoomLocked("boardroom", flow, "UDP") || g.IsRoomLocked("boardroom", netip.AddrPortFrom(flow.Addr(), 0)) {
		t.Fatal("the room's own flow is locked out")
	}
	if g.RoomLocked("huddle", stranger, "UDP") {
		t.Fatal("another room is locked")
	}
	if evs := g.Recent(EventFilter{Rule: RuleRoomLocked, Room: "boardroom"}, 0); len(evs) < 2 {
		t.Fatalf("room-locked events: %+v", evs)
	}
	clk.Add(g.cfg.RoomLockTime + time.Second)
	if g.RoomLocked("boardroom", stranger, "UDP") {
		t.Fatal("still locked after room_lock_time")
	}
	guess()
	clk.Add(g.cfg.RoomLockTime + time.Second)
	if !g.RoomLocked("boardroom", stranger, "UDP") {
		t.Fatal("the second lock is not longer than the first")
	}
}
