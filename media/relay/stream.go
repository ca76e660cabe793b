package relay

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Default learning-window and liveness durations.
const (
	DefaultLatchWindow = 2 * time.Second
	DefaultAlive       = 2 * time.Second
)

// readBuffer is the per-socket receive buffer; larger datagrams are truncated
// and forwarded truncated (RTP over the internet stays below the path MTU).
const readBuffer = 2048

// Side names a leg of a stream.
type Side int

// The two legs: A is the caller side, B the callee side.
const (
	SideA Side = 0
	SideB Side = 1
)

// Other returns the opposite side.
func (s Side) Other() Side { return 1 - s }

func (s Side) String() string {
	if s == SideA {
		return "A"
	}
	return "B"
}

// Peer is what signalling says about one leg's endpoint.
type Peer struct {
	// RTP is the signalled RTP address (c= and m= port). An unspecified IP
	// (hold with c=0.0.0.0) means: do not send until a packet is received.
	RTP netip.AddrPort
	// RTCP is the signalled RTCP address (a=rtcp, or RTP port+1). Ignored
	// with RTCPMux.
	RTCP netip.AddrPort
	// Preferred is the IP the endpoint registered from, if known. Packets
	// from it win the learning window, and before latching media is sent to
	// it instead of a private signalled address.
	Preferred netip.Addr
	// PayloadTypes lists the RTP payload types the leg may send; a packet
	// with another type cannot latch. Empty accepts any.
	PayloadTypes []uint8
	// ClockRates maps payload types to RTP clock rates for jitter.
	ClockRates map[uint8]uint32
	// DefaultClock is used for payload types missing from ClockRates.
	DefaultClock uint32
	// RTCPMux says the leg sends and receives RTCP on the RTP port.
	RTCPMux bool
}

type peerConf struct {
	rtp, rtcp         netip.AddrPort
	sendRTP, sendRTCP netip.AddrPort // where to send before latching
	preferred         netip.Addr
	held              netip.Addr // the IP signalled before a hold with c=0.0.0.0
	pts               ptSet
	clock             [128]uint32
	mux               bool
}

var emptyPeer = &peerConf{}

func newPeerConf(p Peer, old *peerConf, peers *PeerFilter) *peerConf {
	c := &peerConf{rtp: p.RTP, rtcp: p.RTCP, preferred: p.Preferred.Unmap(), mux: p.RTCPMux}
	if c.rtp.Addr().IsUnspecified() {
		// Hold the old way (c=0.0.0.0): the endpoint may still send from where it was.
		c.held = old.held
		if a := old.rtp.Addr(); a.IsValid() && !a.IsUnspecified() {
			c.held = a
		}
	}
	if !c.rtcp.IsValid() && c.rtp.IsValid() && c.rtp.Port() != 0 {
		c.rtcp = netip.AddrPortFrom(c.rtp.Addr(), c.rtp.Port()+1)
	}
	for _, pt := range p.PayloadTypes {
		if pt < 128 {
			c.pts.add(pt)
		}
	}
	for i := range c.clock {
		c.clock[i] = p.DefaultClock
	}
	for pt, r := range p.ClockRates {
		if pt < 128 {
			c.clock[pt] = r
		}
	}
	c.sendRTP, c.sendRTCP = sendAddr(c.rtp, c.preferred), sendAddr(c.rtcp, c.preferred)
	// An SDP may name any address; media never goes to a denied one (the node itself, its
	// loopback services, internal networks).
	if !peers.Allowed(c.sendRTP.Addr()) {
		c.sendRTP = netip.AddrPort{}
	}
	if !peers.Allowed(c.sendRTCP.Addr()) {
		c.sendRTCP = netip.AddrPort{}
	}
	return c
}

// sendAddr picks the destination used before the leg's source is latched.
func sendAddr(sig netip.AddrPort, preferred netip.Addr) netip.AddrPort {
	if !sig.IsValid() || sig.Port() == 0 || sig.Addr().IsUnspecified() {
		return netip.AddrPort{}
	}
	if preferred.IsValid() && !preferred.IsPrivate() && !preferred.IsLoopback() && privateish(sig.Addr()) {
		return netip.AddrPortFrom(preferred, sig.Port()) // NAT: signalled address is unreachable
	}
	return sig
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

func privateish(a netip.Addr) bool {
	return a.IsPrivate() || a.IsLinkLocalUnicast() || cgnat.Contains(a.Unmap())
}

// StreamConfig tunes latching.
type StreamConfig struct {
	// LatchWindow is how long after a side's first valid packet a better
	// source may still take over the latch (default 2 s).
	LatchWindow time.Duration
	// Alive is how long a latched source may stay silent before a source on
	// the same IP (NAT rebinding) may replace it (default 2 s).
	Alive time.Duration
	// Raw relays any non-empty datagram on the even port without RTP
	// checks or statistics beyond packets and bytes (BFCP over UDP and other
	// non-RTP UDP m-lines). The odd port only discards.
	Raw bool
	// Peers, when set, refuses denied addresses as destinations and latched sources.
	Peers *PeerFilter
	// Logger receives rate-limited drop notices.
	Logger *slog.Logger
	// Kernel, when set, carries a direction's RTP in the kernel once both
	// legs' latches are final (see [KernelPath]). Not used for Raw streams.
	Kernel KernelPath
	// Hold is how long a packet that arrives on a leg before the leg's SDP may wait for it
	// (default [DefaultHold]); at most 16 packets per leg are held.
	Hold time.Duration
}

// Stream relays one m-line between two legs. Create it with [NewStream].
type Stream struct {
	log           *slog.Logger
	peers         *PeerFilter
	window, alive int64
	holdFor       int64 // ns a packet may wait in a leg's hold
	raw           bool
	legs          [2]leg
	closed        atomic.Bool
	wg            sync.WaitGroup
	started       int64
	dropLog       rateGate
	kernel        kernelState
}

type leg struct {
	pair      *Pair
	setMu     sync.Mutex // serialises SetPeer (the packet path only loads peer)
	peer      atomic.Pointer[peerConf]
	rtp, rtcp sock
	ctr       counters // traffic received from this leg
	hold      hold     // what the leg sent before its SDP was known
}

type sock struct {
	conn   *net.UDPConn
	side   Side
	isRTCP bool
	latch  latch
	seq    seqTracker // owned by this socket's reader
	out    sendState  // batched sends from this socket (read_linux.go); set before the readers start
}

// NewStream starts relaying between pair a (facing leg A) and pair b (facing
// leg B). The stream owns the pairs and releases them on Close.
func NewStream(a, b *Pair, cfg StreamConfig) *Stream {
	if cfg.LatchWindow <= 0 {
		cfg.LatchWindow = DefaultLatchWindow
	}
	if cfg.Alive <= 0 {
		cfg.Alive = DefaultAlive
	}
	if cfg.Hold <= 0 {
		cfg.Hold = DefaultHold
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Stream{log: cfg.Logger, peers: cfg.Peers, window: int64(cfg.LatchWindow), alive: int64(cfg.Alive), raw: cfg.Raw, started: mono(), holdFor: int64(cfg.Hold)}
	s.dropLog.every = 10 * time.Second
	if !cfg.Raw {
		s.kernel.path = cfg.Kernel
	}
	s.kernel.sync.every, s.kernel.log.every = 250*time.Millisecond, 10*time.Second
	for i, p := range []*Pair{a, b} {
		l := &s.legs[i]
		l.pair = p
		l.peer.Store(emptyPeer)
		l.hold.active.Store(true)
		l.rtp = sock{conn: p.RTP, side: Side(i)}
		l.rtcp = sock{conn: p.RTCP, side: Side(i), isRTCP: true}
		l.rtp.out.init(p.RTP)
		l.rtcp.out.init(p.RTCP)
	}
	for i := range s.legs {
		for _, k := range []*sock{&s.legs[i].rtp, &s.legs[i].rtcp} {
			s.wg.Add(1)
			go s.readLoop(k)
		}
	}
	return s
}

// LocalPort returns the RTP port of the pair facing side (RTCP is +1).
func (s *Stream) LocalPort(side Side) int { return s.legs[side].pair.Port() }

// SetPeer updates what signalling says about side. Until the first SetPeer of a side nothing
// latches on its sockets: what arrives on them is held (see [StreamConfig.Hold]), and the
// first SetPeer forwards the held packets from sources it names, in order, and drops the
// rest. Every later one (the answer, a re-INVITE) opens a new learning window for that side.
func (s *Stream) SetPeer(side Side, p Peer) {
	l := &s.legs[side]
	l.setMu.Lock()
	defer l.setMu.Unlock()
	old := l.peer.Load()
	l.peer.Store(newPeerConf(p, old, s.peers))
	if old != emptyPeer {
		s.Relatch(side)
	}
	s.kernelRemove()
	s.endHold(side)
}

// Relatch opens a new learning window on both sockets facing side, for a
// signalled NAT change or a re-INVITE. The current peer keeps receiving until
// a packet from a new source takes over.
func (s *Stream) Relatch(side Side) {
	s.legs[side].rtp.latch.relearn.Store(true)
	s.legs[side].rtcp.latch.relearn.Store(true)
	s.kernelRemove() // userspace sees the media again and relearns
}

// Latched returns the latched RTP source of side, if any.
func (s *Stream) Latched(side Side) (netip.AddrPort, bool) {
	return s.legs[side].rtp.latch.peerAddr()
}

// LastRTP returns the last time RTP arrived from either leg, or the stream's
// creation time if none has.
func (s *Stream) LastRTP() time.Time {
	s.kernelSync()
	last := max(s.started, s.legs[0].ctr.lastRTP.Load(), s.legs[1].ctr.lastRTP.Load())
	return monoTime(last)
}

// Stats is a snapshot of a stream's counters.
type Stats struct {
	AToB     DirectionStats `json:"a_to_b"`
	BToA     DirectionStats `json:"b_to_a"`
	LatchedA netip.AddrPort `json:"latched_a"` // zero if not latched
	LatchedB netip.AddrPort `json:"latched_b"`
	PortA    int            `json:"port_a"` // relay RTP port facing A
	PortB    int            `json:"port_b"` // relay RTP port facing B
}

// Stats returns a snapshot of the counters.
func (s *Stream) Stats() Stats {
	s.kernelSync()
	la, _ := s.Latched(SideA)
	lb, _ := s.Latched(SideB)
	st := Stats{
		AToB: s.legs[0].ctr.snapshot(), BToA: s.legs[1].ctr.snapshot(),
		LatchedA: la, LatchedB: lb, PortA: s.LocalPort(SideA), PortB: s.LocalPort(SideB),
	}
	st.AToB.Held, st.BToA.Held = uint64(s.legs[0].hold.count.Load()), uint64(s.legs[1].hold.count.Load())
	return st
}

// Close stops forwarding, waits for the readers to exit and releases both
// pairs to the pool, where they drain. Idempotent.
func (s *Stream) Close() {
	if s.closed.Swap(true) {
		return
	}
	s.kernelRemove()
	s.dropHeld()
	now := time.Now()
	for i := range s.legs {
		_ = s.legs[i].rtp.conn.SetReadDeadline(now)
		_ = s.legs[i].rtcp.conn.SetReadDeadline(now)
	}
	s.wg.Wait()
	for i := range s.legs {
		s.legs[i].pair.Release()
	}
}

// readLoopPortable is the reader where recvmmsg is not used: one
// ReadFromUDPAddrPort per datagram.
func (s *Stream) readLoopPortable(k *sock) {
	buf := make([]byte, readBuffer)
	for {
		n, src, err := k.conn.ReadFromUDPAddrPort(buf)
		if s.closed.Load() {
			return
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
			continue
		}
		s.forward(k, buf[:n], netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), mono())
	}
}

// forward is the per-packet path: classify, source check, statistics and
// write to the other leg. It must not allocate in steady state.
func (s *Stream) forward(k *sock, b []byte, src netip.AddrPort, now int64) {
	if out, dst := s.route(k, b, src, now); out != nil {
		out.write(b, dst)
	}
}

// route is forward without the write: it returns the socket b leaves from and
// its destination, or nil when b is not relayed (dropped, or held until the leg's SDP).
func (s *Stream) route(k *sock, b []byte, src netip.AddrPort, now int64) (*sock, netip.AddrPort) {
	from := &s.legs[k.side]
	if from.hold.active.Load() && s.holdEarly(k, from, s.classify(k, b), b, src, now) {
		return nil, netip.AddrPort{}
	}
	return s.routeNow(k, b, src, now)
}

// classify is Classify, or for a raw stream: any non-empty datagram on the even port.
func (s *Stream) classify(k *sock, b []byte) Kind {
	if s.raw {
		if len(b) > 0 && !k.isRTCP {
			return KindRaw
		}
		return KindInvalid
	}
	return Classify(b)
}

// routeNow is route for a packet that is not (or no longer) held.
func (s *Stream) routeNow(k *sock, b []byte, src netip.AddrPort, now int64) (*sock, netip.AddrPort) {
	from := &s.legs[k.side]
	pc := from.peer.Load()
	kind := s.classify(k, b)
	var valid bool
	var signalled netip.AddrPort
	if k.isRTCP {
		valid, signalled = kind == KindRTCP, pc.rtcp
	} else {
		signalled = pc.rtp
		valid = kind == KindRTCP || kind == KindDTLS || kind == KindRaw ||
			(kind == KindRTP && (pc.pts.empty() || pc.pts.has(rtpPT(b))))
	}
	if kind == KindInvalid || (k.isRTCP && kind != KindRTCP) {
		from.ctr.invalid.Add(1)
		return nil, netip.AddrPort{}
	}
	if s.kernel.path != nil && !k.isRTCP {
		s.kernelHook(k, from)
	}
	switch k.latch.check(src, valid, pc, signalled, s.peers, s.window, s.alive, now) {
	case verdictDrop:
		if valid {
			from.ctr.dropped.Add(1)
			if s.dropLog.allow() {
				s.log.Warn("relay dropped packet from unlatched source", "side", k.side.String(), "port", from.pair.Port(), "src", src)
			}
		} else {
			from.ctr.invalid.Add(1)
		}
		return nil, netip.AddrPort{}
	case verdictLatched:
		if !k.isRTCP {
			k.seq.reset(&from.ctr)
		}
		s.kernelRemove()
	case verdictAccept:
		if kind == KindRTP && !k.isRTCP && s.kernel.path != nil && !s.kernel.dirs[k.side].installed.Load() {
			s.kernelTry(k.side, src, pc, now)
		}
	}
	return s.account(k, kind, b, pc, now)
}

// account counts an accepted datagram and picks where it goes.
func (s *Stream) account(k *sock, kind Kind, b []byte, pc *peerConf, now int64) (*sock, netip.AddrPort) {
	from, to := &s.legs[k.side], &s.legs[1-k.side]
	tc := to.peer.Load()
	out := &to.rtp
	var dst netip.AddrPort
	switch kind {
	case KindRTP:
		from.ctr.packets.Add(1)
		from.ctr.bytes.Add(uint64(len(b)))
		from.ctr.lastRTP.Store(now)
		k.seq.update(&from.ctr, b, now, pc.clock[rtpPT(b)])
	case KindRaw, KindDTLS:
		from.ctr.packets.Add(1)
		from.ctr.bytes.Add(uint64(len(b)))
		if kind == KindRaw {
			from.ctr.lastRTP.Store(now) // raw streams count as media activity
		}
	default:
		from.ctr.rtcp.Add(1)
		if !tc.mux {
			out, dst = &to.rtcp, rtcpDest(to, tc)
		}
	}
	if out == &to.rtp {
		dst = rtpDest(to, tc)
	}
	if !dst.IsValid() {
		return nil, dst
	}
	return out, dst
}

// rtpDest is where media for leg l goes: its latched source while signalling still names
// that source's IP, else the signalled address (nowhere while the leg's SDP is unknown).
func rtpDest(l *leg, c *peerConf) netip.AddrPort {
	if a, ok := l.rtp.latch.peerAddr(); ok && c.eligible(a) {
		return a
	}
	return c.sendRTP
}

func rtcpDest(l *leg, c *peerConf) netip.AddrPort {
	if a, ok := l.rtcp.latch.peerAddr(); ok && c.eligible(a) {
		return a
	}
	if a, ok := l.rtp.latch.peerAddr(); ok && a.Port() < 65535 && c.eligible(a) {
		return netip.AddrPortFrom(a.Addr(), a.Port()+1)
	}
	return c.sendRTCP
}
