package relay

import (
	"net/netip"
	"sync/atomic"
)

// Source ranks used while learning: a higher rank replaces a lower one inside the learning
// window. A source of rank rankOther (unrelated to signalling) is never latched.
const (
	rankOther     int32 = iota // any other source: never latched, never sent to
	rankSignalIP               // the IP signalled in SDP (another port: no symmetric RTP)
	rankPreferred              // the IP the endpoint registered or signalled from (NAT)
	rankSignalled              // exactly the address and port signalled in SDP
)

// latch is the learned peer of one socket. Only the socket's reader goroutine changes it,
// except relearn which any goroutine may set.
type latch struct {
	addr      atomic.Pointer[netip.AddrPort] // nil until the first eligible packet
	rank      atomic.Int32
	windowEnd atomic.Int64 // mono ns; 0 = window not opened yet
	lastSeen  atomic.Int64 // mono ns of the last packet from addr
	relearn   atomic.Bool  // set by Relatch: open a new window on the next eligible packet
}

// peerAddr returns the latched address, if any.
func (l *latch) peerAddr() (netip.AddrPort, bool) {
	if p := l.addr.Load(); p != nil {
		return *p, true
	}
	return netip.AddrPort{}, false
}

// rank is what signalling says about src on a socket whose signalled address is signalled
// (the leg's RTP or RTCP address). A leg whose SDP is not known yet ranks every source
// rankOther: nothing latches before signalling names the peer.
func (c *peerConf) rank(src, signalled netip.AddrPort) int32 {
	a := src.Addr()
	switch {
	case signalled.IsValid() && src == signalled:
		return rankSignalled
	case c.preferred.IsValid() && a == c.preferred:
		return rankPreferred
	case signalled.IsValid() && a == signalled.Addr(), c.held.IsValid() && a == c.held:
		return rankSignalIP
	}
	return rankOther
}

// eligible reports whether media may go to a (a latched source): signalling still names its
// IP. It does not allocate.
func (c *peerConf) eligible(a netip.AddrPort) bool {
	ip := a.Addr()
	return (c.rtp.IsValid() && ip == c.rtp.Addr()) || (c.rtcp.IsValid() && ip == c.rtcp.Addr()) ||
		(c.preferred.IsValid() && ip == c.preferred) || (c.held.IsValid() && ip == c.held)
}

// latchVerdict is what check decided about a packet.
type latchVerdict uint8

const (
	verdictAccept  latchVerdict = iota
	verdictLatched              // accepted and (re)latched: reset sequence state
	verdictDrop                 // wrong source
)

// check decides whether src may send on this socket. valid says whether the packet passed
// the header and payload-type checks needed to latch; signalled is the socket's signalled
// address. Only sources that signalling names (the signalled address or IP, the preferred
// IP) and that peers allows ever latch; a stranger spraying the relay ports is dropped
// however early it comes. Inside the learning window a better-ranked source takes over; after
// it the exactly signalled address still displaces any other, and a silent peer may be
// replaced by a source on its IP (NAT rebinding) or the preferred IP.
// It allocates only when it (re)latches.
func (l *latch) check(src netip.AddrPort, valid bool, pc *peerConf, signalled netip.AddrPort, peers *PeerFilter, window, alive int64, now int64) latchVerdict {
	cur := l.addr.Load()
	r := pc.rank(src, signalled)
	if cur != nil && *cur == src {
		if r == rankOther {
			// Signalling moved away from this source (a re-INVITE to another address): it is
			// no longer the peer.
			l.addr.Store(nil)
			return verdictDrop
		}
		l.lastSeen.Store(now)
		if l.relearn.Load() && valid && l.relearn.CompareAndSwap(true, false) {
			l.windowEnd.Store(now + window)
		}
		// The rank is re-read on every packet: signalling may arrive after the first packets
		// (an answer's SDP after the endpoint started sending).
		if r != l.rank.Load() {
			l.rank.Store(r)
		}
		return verdictAccept
	}
	if !valid || r == rankOther || !peers.Allowed(src.Addr()) {
		return verdictDrop
	}
	if l.relearn.Load() && l.relearn.CompareAndSwap(true, false) {
		l.windowEnd.Store(now + window)
		l.rank.Store(-1)
	}
	switch {
	case cur == nil:
		if l.windowEnd.Load() == 0 {
			l.windowEnd.Store(now + window)
		}
	case now < l.windowEnd.Load():
		if r <= l.rank.Load() {
			return verdictDrop
		}
	default: // locked
		displace := r == rankSignalled && l.rank.Load() < rankSignalled
		dead := now-l.lastSeen.Load() > alive
		if !displace && (!dead || (src.Addr() != cur.Addr() && r < rankPreferred)) {
			return verdictDrop
		}
	}
	a := src
	l.addr.Store(&a)
	l.rank.Store(r)
	l.lastSeen.Store(now)
	return verdictLatched
}
