package sbc

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// TestThreeNodeRegistrationsShared starts three signalling nodes that form one cluster through
// the join-token flow, registers a room through node 1 and checks that every node sees the
// binding, owned by node 1 and its flow, within a second.
func TestThreeNodeRegistrationsShared(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster test skipped in -short mode")
	}
	cfg1 := testConfig(t)
	cfg1.Node.ID = "edge1"
	n1 := startNode(t, cfg1)
	token, err := n1.cluster.JoinToken(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	nodes := []*Node{n1}
	for _, id := range []string{"edge2", "edge3"} {
		cfg := testConfig(t)
		cfg.Node.ID = id
		cfg.Cluster.Join = []string{n1.cluster.Addr()}
		cfg.Cluster.JoinToken = token
		nodes = append(nodes, startNode(t, cfg))
	}
	if got := len(n1.cluster.Members()); got != 3 {
		t.Fatalf("members: %d", got)
	}
	if res := registerRoom(t, n1, "tcp", "s3cret-board"); res.StatusCode != 200 {
		t.Fatalf("REGISTER through edge1: %d", res.StatusCode)
	}
	start := time.Now()
	for _, n := range nodes {
		for {
			bs := n.Store().State().Bindings("boardroom", time.Now())
			if len(bs) == 1 {
				if bs[0].Node != "edge1" || bs[0].Transport != "TCP" {
					t.Fatalf("binding on %s: %+v", n.cfg.Node.ID, bs[0])
				}
				break
			}
			if time.Since(start) > time.Second {
				t.Fatalf("binding not on %s after 1s", n.cfg.Node.ID)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	t.Logf("binding visible on all 3 nodes %v after the 200 OK", time.Since(start))

	// A ban made on one node is enforced before parsing on every node within a second.
	ban := netip.MustParsePrefix("203.0.113.66/32")
	start = time.Now()
	if err := nodes[2].Store().Propose(context.Background(), state.PutBan(state.Ban{Prefix: ban, Rule: "test",
		Reason: "ban from edge3", Created: start, Until: start.Add(time.Hour)})); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		for !n.blocklist.Blocked(ban.Addr()) {
			if time.Since(start) > time.Second {
				t.Fatalf("ban not enforced on %s within 1s", n.cfg.Node.ID)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	t.Logf("ban enforced on all 3 nodes %v after it was proposed", time.Since(start))
}
