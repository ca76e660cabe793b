package relay

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// holdPackets is how many packets a leg holds while its SDP is unknown.
const holdPackets = 16

// DefaultHold is how long a packet may wait in a leg's hold for the leg's SDP.
const DefaultHold = time.Second

// heldPacket is one datagram in a hold; its bytes are the hold arena's slot of the same index.
type heldPacket struct {
	n    int
	rtcp bool // arrived on the RTCP socket
	src  netip.AddrPort
	at   int64 // mono ns
}

// hold keeps what a leg sends before its SDP is known (the callee's first RTP, sent with its
// 200 OK, reaching the relay before the edge has read the answer) instead of dropping it.
// When the SDP arrives the held packets go through the latch rules in arrival order as if
// they had just arrived: those from a source signalling names are forwarded, the others
// dropped and counted. It is a fixed ring of holdPackets slots whose buffer is allocated on
// the first packet held and freed once the SDP is applied, so a sprayer costs at most one
// buffer per leg; a packet arriving at a full hold is dropped and counted.
type hold struct {
	active atomic.Bool   // until the leg's SDP has been applied and the hold flushed
	count  atomic.Uint32 // packets held, for Stats
	mu     sync.Mutex    // guards the rest; taken only while active
	arena  []byte        // holdPackets slots of readBuffer bytes
	ring   [holdPackets]heldPacket
	head   int
}

// holdEarly is route's first step while from's hold is active. Before from's SDP is known it
// keeps b and returns true. Once the SDP is known it forwards what is held (if SetPeer has not
// already) and returns false: b then takes the ordinary path, after the held packets.
func (s *Stream) holdEarly(k *sock, from *leg, kind Kind, b []byte, src netip.AddrPort, now int64) bool {
	h := &from.hold
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.active.Load() {
		return false
	}
	if from.peer.Load() != emptyPeer {
		s.releaseHeld(k.side)
		return false
	}
	if kind == KindInvalid || (k.isRTCP && kind != KindRTCP) {
		return false // counted as invalid by the ordinary path, never held
	}
	n := int(h.count.Load())
	for n > 0 && now-h.ring[h.head].at > s.holdFor {
		h.head, n = (h.head+1)%holdPackets, n-1
		from.ctr.dropped.Add(1)
	}
	h.count.Store(uint32(n))
	if n == holdPackets {
		from.ctr.dropped.Add(1)
		return true
	}
	if h.arena == nil {
		h.arena = make([]byte, holdPackets*readBuffer)
	}
	i := (h.head + n) % holdPackets
	h.ring[i] = heldPacket{n: copy(h.arena[i*readBuffer:(i+1)*readBuffer], b), rtcp: k.isRTCP, src: src, at: now}
	h.count.Store(uint32(n + 1))
	return true
}

// releaseHeld sends what side's hold kept through the ordinary path, oldest first, now that
// side's SDP is known, and ends the hold. Packets older than the hold time are dropped and
// counted. The caller holds the hold's mu; the side's readers wait on it meanwhile, so their
// per-socket state is never used by two goroutines at once.
func (s *Stream) releaseHeld(side Side) {
	from := &s.legs[side]
	h := &from.hold
	now := mono()
	for n := int(h.count.Load()); n > 0; n-- {
		p := &h.ring[h.head]
		i := h.head
		h.head = (h.head + 1) % holdPackets
		h.count.Store(uint32(n - 1))
		if now-p.at > s.holdFor {
			from.ctr.dropped.Add(1)
			continue
		}
		k := &from.rtp
		if p.rtcp {
			k = &from.rtcp
		}
		b := h.arena[i*readBuffer : i*readBuffer+p.n]
		if out, dst := s.routeNow(k, b, p.src, now); out != nil {
			out.write(b, dst)
		}
	}
	h.arena, h.head = nil, 0
	h.active.Store(false)
}

// endHold forwards side's held packets once its SDP is stored (SetPeer).
func (s *Stream) endHold(side Side) {
	h := &s.legs[side].hold
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.active.Load() {
		s.releaseHeld(side)
	}
}

// dropHeld discards whatever is held when the stream closes, counting it as dropped.
func (s *Stream) dropHeld() {
	for i := range s.legs {
		h := &s.legs[i].hold
		h.mu.Lock()
		s.legs[i].ctr.dropped.Add(uint64(h.count.Swap(0)))
		h.arena = nil
		h.active.Store(false)
		h.mu.Unlock()
	}
}
