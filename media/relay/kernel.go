package relay

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-sbc/portcullis/media/fastpath"
)

// KernelPath is a kernel fast path (a *fastpath.FastPath) to which a [Stream]
// hands the RTP of a direction once both legs' latches are final. The stream
// keeps every decision: it installs the entry, removes it on any change
// (a relatch, a new SDP, close) and reads the counters when stats are asked
// for, never per packet.
type KernelPath interface {
	Install(fastpath.Entry) error
	Remove(fastpath.Match) (fastpath.Counters, error)
	Counters(fastpath.Match) (fastpath.Counters, error)
}

// kernelRetry is how often a direction that could not be installed is
// retried (checked on packets that reach userspace).
const kernelRetry = int64(250 * time.Millisecond)

// kernelState is the fast-path bookkeeping of a stream; mu serialises
// install, remove and counter reads.
type kernelState struct {
	path KernelPath
	mu   sync.Mutex
	dirs [2]kernelDir // indexed by the sending side
	sync rateGate     // counter refresh triggered by packets reaching userspace
	log  rateGate
}

type kernelDir struct {
	installed atomic.Bool
	resync    atomic.Bool // removed: the reader restarts sequence tracking
	nextTry   atomic.Int64
	match     fastpath.Match
	seen      fastpath.Counters
}

// latchFinal reports whether l has a latched source that no other source can
// take over, with no relearn pending: outside its learning window, or inside it
// when the source is exactly the signalled address (the highest rank: inside
// the window only a higher rank displaces a latch, so nothing does). Such a
// stream reaches the kernel after its first packets instead of after the window.
func latchFinal(l *latch, now int64) bool {
	if l.addr.Load() == nil || l.relearn.Load() {
		return false
	}
	end := l.windowEnd.Load()
	return l.rank.Load() == rankSignalled || (end != 0 && now >= end)
}

func localAddrPort(c *net.UDPConn) netip.AddrPort {
	a, ok := c.LocalAddr().(*net.UDPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	ap := a.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// kernelTry installs the direction from side when src (the packet's source,
// just accepted) is side's final latch and the other leg's latch is final and
// still where media goes. Called from side's RTP reader for RTP it accepted.
func (s *Stream) kernelTry(side Side, src netip.AddrPort, pc *peerConf, now int64) {
	ks := &s.kernel
	d := &ks.dirs[side]
	if now < d.nextTry.Load() {
		return
	}
	d.nextTry.Store(now + kernelRetry)
	from, to := &s.legs[side], &s.legs[side.Other()]
	if !latchFinal(&from.rtp.latch, now) || !latchFinal(&to.rtp.latch, now) {
		return
	}
	dst, ok := to.rtp.latch.peerAddr()
	if !ok || !to.peer.Load().eligible(dst) || !dst.Addr().Is4() || !src.Addr().Is4() {
		return
	}
	var pts []uint8
	for pt := range uint8(128) {
		if pc.pts.has(pt) {
			pts = append(pts, pt)
		}
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	// Relatch and Close set their flags before they take mu: re-checked here,
	// an install never outlives them.
	if s.closed.Load() || d.installed.Load() || from.rtp.latch.relearn.Load() || to.rtp.latch.relearn.Load() {
		return
	}
	if cur, ok := from.rtp.latch.peerAddr(); !ok || cur != src {
		return
	}
	e := fastpath.Entry{
		Match: fastpath.Match{Src: src, Relay: localAddrPort(from.rtp.conn)},
		Via:   localAddrPort(to.rtp.conn), Dst: dst, PayloadTypes: pts,
	}
	if err := ks.path.Install(e); err != nil {
		if ks.log.allow() {
			s.log.Warn("kernel media path: install failed, staying in userspace", "side", side.String(), "err", err)
		}
		return
	}
	d.match, d.seen = e.Match, fastpath.Counters{}
	d.installed.Store(true)
}

// kernelRemove removes both directions, accounting what the kernel forwarded.
func (s *Stream) kernelRemove() {
	s.eachInstalled(func(side Side, d *kernelDir, now int64) {
		c, err := s.kernel.path.Remove(d.match)
		if err != nil && s.kernel.log.allow() {
			s.log.Warn("kernel media path: remove failed", "side", side.String(), "err", err)
		}
		s.kernelAccount(side, c, now)
		d.installed.Store(false)
		d.resync.Store(true)
	})
}

// kernelSync adds what the kernel forwarded since the last call to the
// stream's counters.
func (s *Stream) kernelSync() {
	s.eachInstalled(func(side Side, d *kernelDir, now int64) {
		if c, err := s.kernel.path.Counters(d.match); err == nil {
			s.kernelAccount(side, c, now)
		}
	})
}

// eachInstalled calls fn for each direction installed in the kernel, under the kernel lock;
// it takes no lock when none is (the common case of a userspace stream).
func (s *Stream) eachInstalled(fn func(side Side, d *kernelDir, now int64)) {
	ks := &s.kernel
	if ks.path == nil || (!ks.dirs[0].installed.Load() && !ks.dirs[1].installed.Load()) {
		return
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	now := mono()
	for i := range ks.dirs {
		if d := &ks.dirs[i]; d.installed.Load() {
			fn(Side(i), d, now)
		}
	}
}

// kernelAccount publishes the growth of c over what was seen; ks.mu held. The
// arrival time of kernel-forwarded packets is known to the sync, not the packet.
func (s *Stream) kernelAccount(side Side, c fastpath.Counters, now int64) {
	d := &s.kernel.dirs[side]
	if c.Packets > d.seen.Packets {
		from := &s.legs[side]
		from.ctr.packets.Add(c.Packets - d.seen.Packets)
		from.ctr.bytes.Add(c.Bytes - d.seen.Bytes)
		from.ctr.lastRTP.Store(now)
		from.rtp.latch.lastSeen.Store(now)
	}
	d.seen = c
}

// kernelHook runs on the RTP reader of a stream with a kernel path, before the
// latch check: after a removal it restarts sequence tracking (the kernel
// forwarded the sequence numbers in between), and while the direction is in
// the kernel, a packet reaching userspace (a stranger, RTCP, another payload
// type) refreshes the counters so the latch sees the peer alive.
func (s *Stream) kernelHook(k *sock, from *leg) {
	d := &s.kernel.dirs[k.side]
	if d.resync.Load() && d.resync.CompareAndSwap(true, false) {
		k.seq.reset(&from.ctr)
	}
	if d.installed.Load() && s.kernel.sync.allow() {
		s.kernelSync()
	}
}
