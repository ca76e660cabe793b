// Package relay is the media hot path: a pool of UDP RTP/RTCP port pairs and
// the per-stream forwarding between two call legs.
//
// A [Pool] hands out even/odd port pairs from a range. A released pair keeps
// its sockets bound and discards whatever arrives for the drain time before
// the ports can be handed out again, so a new call never inherits the media
// of an old one.
//
// A [Stream] relays one SDP m-line between leg A and leg B with two pairs, one
// facing each leg. Each socket has exactly one reader goroutine with one
// reused buffer; the per-packet path (header check, source check, statistics,
// write) takes no lock and allocates nothing. Each socket latches to the
// source of the first valid packet inside a learning window, preferring the
// address signalled in SDP and the address the endpoint registered from, and
// then drops packets from any other source (RTP bleed protection) until
// [Stream.Relatch] opens a new window. A latched source that has gone silent
// may be replaced only by a source on the same IP (a NAT port rebinding) or by
// the signalled/registered address.
//
// Batching was measured and not adopted. With 16 datagrams queued, one
// golang.org/x/net/ipv4 ReadBatch (recvmmsg) against 16 ReadFromUDPAddrPort
// calls gave 89-106 µs vs 92-143 µs per 16 datagrams including the 16
// writes (BenchmarkReadBatch / BenchmarkReadSingle, -count=3, on a shared
// 2-core machine): at best a few per cent, inside the noise. ReadBatch also
// allocates 2 objects per datagram (x/net builds a net.UDPAddr and net.IP
// for every source), which the zero-allocation hot path does not allow, and
// RTP sockets at 50-1500 packets/s rarely have more than one datagram queued
// per wake-up. Scale across cores with more sockets (one goroutine each).
package relay
