package sbc

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// TestTrunkPeers: the datagram meter's exemption for other nodes covers the trunk addresses of
// their bindings (IP literals and resolved names, refreshed), and the sources of signed trunk
// requests for an hour after the last one; this node's own bindings add nothing.
func TestTrunkPeers(t *testing.T) {
	cfg := testConfig(t)
	n := startNode(t, cfg)
	exp := time.Now().Add(time.Hour)
	for _, b := range []state.Binding{
		{Room: "r1", Contact: "sip:r1@x", Source: "198.51.100.1:5060", Node: "other", Local: "192.0.2.10:5060", Expires: exp},
		{Room: "r2", Contact: "sip:r2@x", Source: "198.51.100.2:5060", Node: "other2", Local: "localhost:5060", Expires: exp},
		{Room: "r3", Contact: "sip:r3@x", Source: "198.51.100.3:5060", Node: n.cfg.Node.ID, Local: "192.0.2.99:5060", Expires: exp},
	} {
		if err := n.Store().Propose(context.Background(), state.PutBinding(b)); err != nil {
			t.Fatal(err)
		}
	}
	n.refreshTrunkPeers(context.Background())
	for a, want := range map[string]bool{"192.0.2.10": true, "127.0.0.1": true, "192.0.2.99": false, "198.51.100.1": false} {
		if got := n.peers.has(netip.MustParseAddr(a)); got != want {
			t.Errorf("peer %s: %v, want %v", a, got, want)
		}
	}
	// a signed trunk request's source stays a peer across refreshes, for an hour
	signer := netip.MustParseAddr("203.0.113.5")
	now := time.Now()
	n.peers.sawSigned(signer, now)
	if !n.peers.has(signer) || !n.clusterPeer(netip.AddrPortFrom(signer, 5060)) {
		t.Fatal("signed trunk source is not a peer")
	}
	n.peers.setKnown(nil, now.Add(30*time.Minute))
	if !n.peers.has(signer) {
		t.Fatal("signed trunk source forgotten at the next refresh")
	}
	n.peers.setKnown(nil, now.Add(61*time.Minute))
	if n.peers.has(signer) {
		t.Fatal("signed trunk source kept after an hour without a signed request")
	}
}
