package relay

import (
	"net/netip"
	"sync/atomic"
)

// Source ranks used while learning: a higher rank replaces a lower one inside
// the learning window.
const (
	rankOther     int32 = iota // any source
	rankSignalIP               // the IP signalled in SDP
	rankPreferred              // the IP the endpoint registered from
	rankSignalled              // exactly the address and port signalled in SDP
)

// latch is the learned peer of one socket. Only the socket's reader
// goroutine changes it, except relearn which any goroutine may set.
type latch struct {
	addr      atomic.Pointer[netip.AddrPort] // nil until the first valid packet
	rank      atomic.Int32
	windowEnd atomic.Int64 // mono ns; 0 = window not opened yet
	lastSeen  atomic.Int64 // mono ns of the last packet from addr
	relearn   atomic.Bool  // set by Relatch: open a new window on the next packet
}

// peerAddr returns the latched address, if any.
func (l *latch) peerAddr() (netip.AddrPort, bool) {
	if p := l.addr.Load(); p != nil {
		return *p, true
	}
	return netip.AddrPort{}, false
}

func rankOf(src, signalled netip.AddrPort, preferred netip.Addr) int32 {
	switch {
	case signalled.IsValid() && src == signalled:
		return rankSignalled
	case preferred.IsValid() && src.Addr() == preferred:
		return rankPreferred
	case signalled.IsValid() && src.Addr() == signalled.Addr():
		return rankSignalIP
	}
	return rankOther
}

// latchVerdict is what check decided about a packet.
type latchVerdict uint8

const (
	verdictAccept  latchVerdict = iota
	verdictLatched              // accepted and (re)latched: reset sequence state
	verdictDrop                 // wrong source
)

// check decides whether src may send on this socket. valid says whether the
// packet passed the header and payload-type checks needed to latch.
// It allocates only when it (re)latches.
func (l *latch) check(src netip.AddrPort, valid bool, signalled netip.AddrPort, preferred netip.Addr, window, alive int64, now int64) latchVerdict {
	cur := l.addr.Load()
	if l.relearn.Load() && valid && l.relearn.CompareAndSwap(true, false) {
		l.windowEnd.Store(now + window)
		l.rank.Store(-1)
	}
	if cur != nil && *cur == src {
		l.lastSeen.Store(now)
		// The rank is re-read on every packet: signalling may arrive after the first packets
		// (an answer's SDP after the callee started sending), and then the latched source
		// becomes the signalled one. Relearning (-1) also ends here.
		if r := rankOf(src, signalled, preferred); r != l.rank.Load() {
			l.rank.Store(r)
		}
		return verdictAccept
	}
	if !valid {
		return verdictDrop
	}
	r := rankOf(src, signalled, preferred)
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
		dead := now-l.lastSeen.Load() > alive
		if !dead || (src.Addr() != cur.Addr() && r < rankPreferred) {
			return verdictDrop
		}
	}
	a := src
	l.addr.Store(&a)
	l.rank.Store(r)
	l.lastSeen.Store(now)
	return verdictLatched
}
