// Package sinks ships call records and security events out of the node: to syslog servers
// (RFC 5424 over UDP, or over TCP/TLS with RFC 6587 octet counting), to webhooks (a JSON batch
// POSTed with an HMAC-SHA256 signature header) and to rotating JSON-lines files.
//
// Call records are read from the replicated state, never from the call path, so a slow or dead
// sink never slows a call. Exactly one node ships them, the Raft leader, from the cursor kept in
// the replicated state (state.SinkCursor), which it advances after each delivered batch: a new
// leader, or the same node after a restart, resumes where the last delivery ended. Records are
// delivered at least once; each carries a stable dedup key ("record-<seq>"). The state is the
// queue: a sink that is down only falls behind; records are lost only if the state's record log
// trimmed them before they were shipped, and those are counted as dropped.
//
// Security events (guard refusals) are seen by one node and shipped by it, best effort: each
// sink has a bounded in-memory queue, and what does not fit is dropped and counted. Each event
// carries a dedup key unique to the node's life ("event-<node>-<boot>-<n>").
//
// Every sink retries with exponential backoff until it delivers. Metrics:
// portcullis_sink_delivered_total, portcullis_sink_dropped_total (labels sink, stream) and
// portcullis_sink_lag (records not yet delivered, label sink).
package sinks
