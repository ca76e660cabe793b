// Package cluster runs the Raft node that replicates Portcullis state (package cluster/state)
// across 1, 3 or 5 nodes. A single node is a one-node cluster on the same code path.
//
// # Transport and trust
//
// One TCP listener per node carries everything under TLS 1.3 with mutual authentication
// against the cluster CA: the first byte after the handshake selects a Raft stream or an
// internal RPC (write forwarding from followers, membership changes, consistent-read barriers,
// health pings). A node without certificates either creates a cluster CA (the first node:
// Init, which Open does by itself on a bootstrap) or obtains a certificate with a join token
// (NewJoinToken on the CA holder): the joiner pins the CA fingerprint from the token, proves the
// token's secret, sends a CSR and receives its certificate, then asks the leader over mutual
// TLS to add it as a voter.
//
// # Reads and writes
//
// Reads are local (Node.State). Propose forwards to the leader and returns once the command is
// committed and applied there; Enqueue batches commands without making the caller wait.
// Consistent makes the next read linearizable. The leader sweeps expired bindings and bans
// (state.Expire) with its own clock; RunLeaderTask runs other leader-only work.
//
// # Operations
//
//   - Zero configuration: Open(ctx, DefaultConfig()) bootstraps a one-node cluster in ./data on
//     127.0.0.1:7000 and resumes from it on every later start.
//   - Adding a node: `portcullis cluster join-token` on the CA holder (the first node), then
//     start the new node with that token (and its own advertise address). One token can add
//     several nodes until it expires (default 1 h). Run 3 or 5 voters, never 2.
//   - Rolling restart or upgrade: stop one node at a time with SIGTERM (Leave: it hands over
//     leadership and stays a member); it rejoins by itself from its data dir. Wait for
//     Healthy on every node before the next one.
//   - Decommission: Decommission on the node itself, or Remove(id) on any other; the node's
//     registrations are dropped. A removed node cannot come back with its old data dir: wipe it
//     and join again with a new token.
//   - A node that stops with ErrHalted met a command from a newer version: upgrade its binary.
//   - Backup: copy the data dir of a stopped node (raft/ holds the log and snapshots, tls/ the
//     certificates; tls/ca.key exists only on the CA holder and is needed for new tokens).
package cluster
