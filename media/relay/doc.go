// Package relay is the media hot path: a pool of UDP RTP/RTCP port pairs and
// the per-stream forwarding between two call legs.
//
// A [Pool] hands out even/odd port pairs from a range, picked at random (ChaCha8 seeded from
// crypto/rand), so that the next call's ports cannot be predicted from the last one's. A
// released pair keeps its sockets bound and discards whatever arrives for the drain time
// before the ports can be handed out again, so a new call never inherits the media of an old
// one.
//
// A [TCPStream] carries a TCP m-line (BFCP over TCP or TLS, the default
// floor control of Poly room systems) on the same pairs: it listens on TCP
// on each leg's RTP port number (a TCP and a UDP socket on one port number
// are independent, and the pool's pair keeps the number from being handed
// out twice), admits one connection per leg from the signalled or registered
// IP only, and copies the bytes between the two connections without
// terminating TLS.
//
// A [Stream] relays one SDP m-line between leg A and leg B with two pairs, one
// facing each leg. Each socket has exactly one reader goroutine with one
// reused buffer; the per-packet path (header check, source check, statistics,
// write) takes no lock once the leg's SDP is known and allocates nothing. A socket latches only to a source
// that signalling names: nothing before its leg's SDP is known ([Stream.SetPeer]),
// then the signalled address, another port on the signalled IP, or the preferred
// IP (where the endpoint registered or signalled from, for NAT). A stranger
// spraying the relay ports is never relayed however early it comes. What arrives on a leg
// before its SDP is held, not dropped (at most 16 packets per leg for up to 1 s, in a buffer
// allocated on the first packet held and freed at the SDP): the callee's first RTP, sent with
// its 200 OK, reaches the relay before the edge has read the answer. The leg's first SetPeer
// passes the held packets through the latch rules in arrival order, as if they had just
// arrived: those from a source the SDP names are relayed, the rest dropped and counted.
// Inside a learning window a better-ranked source takes over; after it the latch is locked and
// packets from any other source are dropped (RTP bleed protection), except that
// the exactly signalled address always displaces another source, and a latched
// source that has gone silent may be replaced by a source on its IP (a NAT port
// rebinding) or the preferred IP. Every SetPeer after the first (the answer, a
// re-INVITE) and [Stream.Relatch] open a new window. A [PeerFilter] (the deny
// list shared with the TURN server) keeps media from being sent to, or latched
// from, loopback, the node's own and internal addresses.
//
// On 64-bit Linux each reader stays inside one RawConn.Read and drains its
// socket with recvmmsg for eight datagrams: a call that returns fewer than it
// asked for proves the queue empty, so the reader parks on the netpoller at
// once. A packet then costs one receive and one send syscall, where
// ReadFromUDPAddrPort costs a second receive that only says EAGAIN; with the
// load tool at 200 audio+video calls that cut the relay's CPU per packet to
// 0.8x rtpengine's (it was 1.03-1.17x). Deeper batches pay only when datagrams queue (bursts, a
// loaded machine): an RTP socket at 50-1500 packets/s rarely has a second one queued per
// wake-up, and
// golang.org/x/net/ipv4's ReadBatch allocates per datagram
// (BenchmarkReadBatch). Sends are raw system calls too: sendmmsg for several datagrams leaving
// one socket, sendto for one (WriteToUDPAddrPort only when the send buffer is full): the
// runtime's send path (descriptor lock, scheduler hand-off around the call) cost about 1 µs of
// the 8-10 per packet relayed. Elsewhere the reader is one ReadFromUDPAddrPort per
// datagram. Sources are unmapped (::ffff:a.b.c.d from a socket bound to the
// wildcard address compares equal to the a.b.c.d signalled in SDP).
package relay
