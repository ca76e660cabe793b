// Package state is the replicated data model of Portcullis: rooms and their credentials and inbound
// policy, the guard's lists and bans, registrations (bindings with the node and flow that own them),
// active calls, call records, admin tokens and the audit trail.
//
// State changes only through typed Commands (a type byte, a version byte and a payload) applied in
// the same order on every node, so Apply must be deterministic: it never reads the clock or any
// other local input; every time it needs travels inside the command. Reads are local and cheap.
//
// The cluster package applies commands through Raft; Local applies them directly (tests, tools).
package state
