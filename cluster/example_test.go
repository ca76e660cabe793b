package cluster_test

import (
	"context"
	"log"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster"
	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// A single node with the defaults: data in ./data, listening on 127.0.0.1:7000, a cluster CA
// generated on first start. Nothing to configure.
func Example() {
	ctx := context.Background()
	n, err := cluster.Open(ctx, cluster.DefaultConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer n.Leave(ctx) // SIGTERM: hand leadership over, stay a member

	var store state.Store = n // what the signalling node uses
	_ = store.Propose(ctx, state.PutRoom(state.Room{Name: "boardroom", Inbound: state.InboundOpen}))
	store.Enqueue(state.PutBinding(state.Binding{Room: "boardroom", Contact: "sip:boardroom@192.0.2.10",
		Node: n.NodeID(), Expires: time.Now().Add(time.Hour)}))
	_, _ = store.State().Room("boardroom")
}
