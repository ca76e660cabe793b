package sbc

import (
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/sbc/config"
)

// Issue #15, leftovers: the detection window.

// TestCallToRoomOnDeadNodeBeforeDetection (item 2): a room registered through edge1; edge1
// dies. Before the cluster declares it lost (node_lost_after, 60 s here so the whole call
// falls in the window), a call through edge2 for the room is handed to edge1, which says
// nothing. The caller gets 480 with Retry-After once edge1 has been silent (no 100, no answer
// to the cluster's pings) for the trunk timeout. Before (seen failing): the INVITE to the dead
// node ran until its transaction timed out and the caller got 408 (Timer B, 32 s).
func TestCallToRoomOnDeadNodeBeforeDetection(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster test skipped in -short mode")
	}
	nodes := startCluster(t, func(t *testing.T) config.Config {
		cfg := haConfig(t)
		cfg.Cluster.NodeLostAfter = config.Duration(60 * time.Second)
		return cfg
	})
	n1, n2 := nodes[0], nodes[1]
	room := newTestUA(t, "room")
	room.register(n1, "boardroom", "s3cret-board")
	waitUntil(t, 5*time.Second, "the binding on edge2", func() bool {
		bs := n2.Store().State().Bindings("boardroom", time.Now())
		return len(bs) == 1 && bs[0].Local != ""
	})
	n1.Close()
	if n2.flowNodeDown("edge1") {
		t.Fatal("edge1 already seen down: the call would not fall in the detection window")
	}
	caller := newTestUA(t, "caller")
	caller.timeout = 45 * time.Second // longer than Timer B: before, the answer was its 408
	start := time.Now()
	call := caller.invite(n2, roomURI(n2, "boardroom"), "visitor", "outside.example", testSDP, nil)
	took := time.Since(start)
	if n2.flowNodeDown("edge1") {
		t.Logf("note: edge1 was declared down during the call (after %v)", took)
	}
	if call.final == nil || call.final.StatusCode != 480 || call.final.GetHeader("Retry-After") == nil {
		t.Fatalf("call to a room whose node died %v ago and is not yet declared lost: %v, want 480 with Retry-After",
			took, call.final)
	}
	t.Logf("call to a room whose node is dead, not yet declared lost: %d with Retry-After %s after %v",
		call.final.StatusCode, call.final.GetHeader("Retry-After").Value(), took.Round(time.Millisecond))
}
