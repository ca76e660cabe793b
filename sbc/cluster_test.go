package sbc

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/cluster"
	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/testpeer"
	"github.com/portcullis-sbc/portcullis/internal/testutil"
	"github.com/portcullis-sbc/portcullis/sbc/b2bua"
	"github.com/portcullis-sbc/portcullis/sbc/config"
)

// TestThreeNodeRegistrationsShared starts three signalling nodes that form one cluster through
// the join-token flow, registers a room through node 1 and checks that every node sees the
// binding, owned by node 1 and its flow, and enforces a ban made on node 3. How long each took
// is logged (typically milliseconds); the waits are testutil's (a hard 5 s bound failed on a
// loaded CI machine).
func TestThreeNodeRegistrationsShared(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster test skipped in -short mode")
	}
	nodes := startCluster(t, testConfig)
	n1 := nodes[0]
	waitUntil(t, testutil.Wait, "three members", func() bool { return len(n1.cluster.Members()) == 3 })
	if res := registerRoom(t, n1, "tcp", "s3cret-board"); res.StatusCode != 200 {
		t.Fatalf("REGISTER through edge1: %d", res.StatusCode)
	}
	start := time.Now()
	for _, n := range nodes {
		var bs []state.Binding
		waitUntil(t, testutil.Wait, "the binding on "+n.cfg.Node.ID, func() bool {
			bs = n.Store().State().Bindings("boardroom", time.Now())
			return len(bs) == 1
		})
		if bs[0].Node != "edge1" || bs[0].Transport != "TCP" {
			t.Fatalf("binding on %s: %+v", n.cfg.Node.ID, bs[0])
		}
	}
	t.Logf("binding visible on all 3 nodes %v after the 200 OK", time.Since(start))

	// A ban made on one node is enforced before parsing on every node.
	ban := netip.MustParsePrefix("203.0.113.66/32")
	start = time.Now()
	proposeIdempotent(t, nodes[2], state.PutBan(state.Ban{Prefix: ban, Rule: "test",
		Reason: "ban from edge3", Created: start, Until: start.Add(time.Hour)}))
	for _, n := range nodes {
		waitUntil(t, testutil.Wait, "the ban enforced on "+n.cfg.Node.ID, func() bool { return n.blocklist.Blocked(ban.Addr()) })
	}
	t.Logf("ban enforced on all 3 nodes %v after it was proposed", time.Since(start))
}

// proposeIdempotent proposes a command that may be applied twice (a ban, a binding) through
// node, sending it again while no leader is reachable or the outcome is unknown (a loaded
// machine: an election, a forwarded attempt timing out).
func proposeIdempotent(t *testing.T, node *Node, cmd state.Command) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := node.Store().Propose(context.Background(), cmd) // bounded by the cluster's ApplyTimeout
		if err == nil {
			return
		}
		if !errors.Is(err, cluster.ErrNoLeader) && !errors.Is(err, cluster.ErrOutcomeUnknown) || time.Now().After(deadline) {
			t.Fatalf("propose %s: %v", cmd.Type, err)
		}
		t.Logf("propose %s: %v; sending it again", cmd.Type, err)
		time.Sleep(50 * time.Millisecond) // a pause between tries, not an assert
	}
}

// TestClusterCallAcrossNodes: a room registers through edge1; a SIPp caller calls it through
// edge2, which hands the call to edge1 over the internal trunk; the call connects. Then edge1
// dies, the room re-registers through edge2 (as room systems do with several SRV targets) and
// calls reach it again.
func TestClusterCallAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster test skipped in -short mode")
	}
	testpeer.Require(t, "sipp")
	nodes := startCluster(t, callConfig)
	n1, n2 := nodes[0], nodes[1]
	room := newTestUA(t, "room")
	room.register(n1, "boardroom", "s3cret-board")
	waitFor(t, func() bool {
		bs := n2.Store().State().Bindings("boardroom", time.Now())
		return len(bs) == 1 && bs[0].Node == "edge1" && bs[0].Local != ""
	})
	sippCall(t, n2, "boardroom", "uac.xml", 1)
	if inv := room.waitRequest(sip.INVITE, 2*time.Second); inv.GetHeader(b2bua.TrunkHeader) != nil {
		t.Fatal("the trunk header reached the room")
	}
	rec := records(t, n2, 1)[0]
	if rec.Status != 200 || rec.Node != "edge2" {
		t.Fatalf("record %+v", rec)
	}
	if got := len(n1.Store().State().Records(state.RecordQuery{})); got != 1 {
		t.Fatalf("%d records for one call (the handing node keeps it)", got)
	}

	// edge1 dies; the room re-registers through edge2 and is reachable again
	start := time.Now()
	n1.Close()
	room.register(n2, "boardroom", "s3cret-board")
	t.Logf("re-registered through edge2 %v after edge1 died", time.Since(start).Round(time.Millisecond))
	sippCall(t, n2, "boardroom", "uac.xml", 1)
	waitFor(t, func() bool { return len(n2.Store().State().Records(state.RecordQuery{})) == 2 })
}

// startCluster starts three nodes (edge1..edge3) from conf: edge1 bootstraps, the others join it
// with a join token.
func startCluster(t *testing.T, conf func(*testing.T) config.Config) []*Node {
	t.Helper()
	cfg1 := conf(t)
	cfg1.Node.ID = "edge1"
	n1 := startNode(t, cfg1)
	token, err := n1.cluster.JoinToken(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	nodes := []*Node{n1}
	for _, id := range []string{"edge2", "edge3"} {
		cfg := conf(t)
		cfg.Node.ID = id
		cfg.Cluster.Join = []string{n1.cluster.Addr()}
		cfg.Cluster.JoinToken = token
		nodes = append(nodes, startNode(t, cfg))
	}
	return nodes
}
