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

// TestOutboundRoomCallableWhileEitherFlowNodeDies (issue #15): a room registers one RFC 5626
// flow through edge1 and one through edge2; a caller calls it through edge3. Whichever node
// holding a flow is killed (the newest flow's, which calls take first), calls placed right
// after, before the cluster declares the node lost, are all answered over the other flow: the
// silent node is given up on after the trunk timeout and the call moves on (flownode.go).
func TestOutboundRoomCallableWhileEitherFlowNodeDies(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster test skipped in -short mode")
	}
	for _, kill := range []int{0, 1} {
		t.Run("edge"+itoa(kill+1), func(t *testing.T) {
			nodes := startCluster(t, callConfig)
			keep := 1 - kill
			n3 := nodes[2]
			const inst = `;+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf8>"`
			survivor := dialStreamRoom(t, nodes[keep], "TCP")
			survivor.register(nodes[keep], "boardroom", "s3cret-board", inst+";reg-id=1")
			doomed := dialStreamRoom(t, nodes[kill], "TCP")
			doomed.contact = survivor.contact
			doomed.register(nodes[kill], "boardroom", "s3cret-board", inst+";reg-id=2") // newest: tried first
			waitUntil(t, 10*time.Second, "both flows visible on edge3", func() bool {
				bs := n3.Store().State().Bindings("boardroom", time.Now())
				return len(bs) == 2 && bs[0].Node != bs[1].Node
			})
			nodes[kill].Close()
			caller := newTestUA(t, "caller")
			const calls = 5
			failed := 0
			for i := range calls {
				start := time.Now()
				done := make(chan *testCall, 1)
				go func() {
					done <- caller.invite(n3, roomURI(n3, "boardroom"), "visitor", "outside.example", testSDP, nil)
				}()
				inv := survivor.answerInvite("boardroom", "t"+itoa(i), streamRoomSDP("127.0.0.1"))
				c := <-done
				if c.final == nil || c.final.StatusCode != 200 {
					failed++
					t.Errorf("call %d after edge%d died: %v", i, kill+1, c.final)
					continue
				}
				c.ack(c.final)
				if i == 0 {
					t.Logf("first call after edge%d died answered over the flow on edge%d after %v (node_lost_after 3s, "+
						"declared lost: %v)", kill+1, keep+1, time.Since(start).Round(time.Millisecond), n3.flowNodeDown(nodes[kill].cfg.Node.ID))
				}
				survivor.bye(inv, "t"+itoa(i))
				waitNoCalls(t, n3, nodes[keep])
			}
			if failed > 0 {
				t.Fatalf("%d of %d calls failed", failed, calls)
			}
		})
	}
}
