// Package cluster runs the Raft node that replicates Portcullis state (package cluster/state)
// across 1, 3 or 5 nodes. A single node is a one-node cluster on the same code path.
//
// One TCP listener per node carries everything, under mutual TLS against the cluster CA
// (TLS 1.3): the first byte after the handshake selects a Raft stream or an internal RPC
// (write forwarding from followers, membership changes, consistent-read barriers). A node
// without certificates either creates a cluster CA (first node: Init, done automatically by
// Open) or obtains a certificate with a join token (NewJoinToken), pinning the CA fingerprint.
//
// Writes go to the leader (Propose forwards from followers; Enqueue batches without making
// the caller wait); reads are local (Node.State); Consistent makes a read linearizable.
// The leader sweeps expired bindings and bans (state.Expire) with its own clock.
//
// Operations: Leave transfers leadership and stops without leaving the configuration (a
// rolling restart: the node comes back from its data dir with no operator action);
// Decommission and Remove take a node out of the configuration for good.
package cluster
