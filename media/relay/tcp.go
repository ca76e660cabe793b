package relay

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// DefaultTCPPending is how long a connection accepted before its leg's SDP
// is known may wait for it (the callee connects as soon as it has sent its
// answer, which can reach us after its SYN).
const DefaultTCPPending = 10 * time.Second

const (
	// tcpMaxPending bounds the connections waiting for a leg's SDP.
	tcpMaxPending = 4
	// tcpBuffer is the read buffer of each direction of a splice. BFCP
	// messages are tens to hundreds of bytes.
	tcpBuffer = 16 << 10
)

// TCPPeer is what signalling says about one leg of a TCP stream.
type TCPPeer struct {
	// Addr is the signalled address (c=). Connections from this IP are
	// accepted from any port: an active endpoint connects from an ephemeral
	// port and signals port 9 or anything else (RFC 4145 section 4.1).
	Addr netip.Addr
	// Preferred is the IP the endpoint registered from (its NAT's public
	// address), if known; connections from it are accepted too.
	Preferred netip.Addr
}

func (p *TCPPeer) allows(src netip.Addr) bool {
	if p == nil || !src.IsValid() {
		return false
	}
	return (p.Addr.IsValid() && !p.Addr.IsUnspecified() && p.Addr.Unmap() == src) ||
		(p.Preferred.IsValid() && !p.Preferred.IsUnspecified() && p.Preferred.Unmap() == src)
}

// TCPConfig tunes a [TCPStream].
type TCPConfig struct {
	// Pending is how long a connection that arrived before its leg's
	// [TCPStream.SetPeer] may wait for it (default DefaultTCPPending).
	Pending time.Duration
	// Logger receives rate-limited refusal notices.
	Logger *slog.Logger
}

// TCPStream relays one TCP m-line (BFCP over TCP or TLS) between two legs.
// It listens on TCP on the RTP port of each leg's pair and is passive toward
// both: each leg connects to the port it was given. It accepts one
// connection per leg, only from the leg's signalled or preferred IP, and
// refuses (resets) and counts every other one. Once both legs are connected
// it copies the bytes both ways; TLS is not terminated, so the endpoints'
// a=fingerprint and certificates are end to end. Until the second leg
// connects the first one is not read: its bytes wait in the kernel's socket
// buffers and TCP flow control holds the sender when they are full, which
// bounds them without a buffer of ours. When either leg closes, the other
// is closed too (half-closes are passed on), and each leg may connect again.
type TCPStream struct {
	log     *slog.Logger
	pending time.Duration
	started int64
	dropLog rateGate
	wg      sync.WaitGroup

	mu     sync.Mutex
	closed bool
	legs   [2]tcpLeg
}

type tcpLeg struct {
	pair    *Pair
	ln      *net.TCPListener
	peer    *TCPPeer // nil until SetPeer
	conn    *net.TCPConn
	waiting []pendingConn
	ctr     counters // traffic received from this leg
}

type pendingConn struct {
	c     *net.TCPConn
	src   netip.Addr
	timer *time.Timer
}

// NewTCPStream listens on TCP on the RTP port of pair a (facing leg A) and
// of pair b (facing leg B). The UDP sockets of the pairs stay bound and idle
// while the stream lives, so the pool's accounting and draining hold for the
// port numbers. On success the stream owns the pairs and releases them on
// Close; on failure (a TCP port taken by another socket) the caller still
// owns them.
func NewTCPStream(a, b *Pair, cfg TCPConfig) (*TCPStream, error) {
	if cfg.Pending <= 0 {
		cfg.Pending = DefaultTCPPending
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &TCPStream{log: cfg.Logger, pending: cfg.Pending, started: mono()}
	s.dropLog.every = 10 * time.Second
	for i, p := range []*Pair{a, b} {
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(p.pool.Bind(), uint16(p.Port()))))
		if err != nil {
			if i == 1 {
				_ = s.legs[0].ln.Close()
			}
			return nil, fmt.Errorf("%w: tcp %d: %w", ErrPortUnavailable, p.Port(), err)
		}
		s.legs[i].pair, s.legs[i].ln = p, ln
	}
	for i := range s.legs {
		s.wg.Add(1)
		go s.acceptLoop(Side(i))
	}
	return s, nil
}

// LocalPort returns the TCP port facing side.
func (s *TCPStream) LocalPort(side Side) int { return s.legs[side].pair.Port() }

// SetPeer sets what signalling says about side and decides the connections
// that were waiting for it. A connection already spliced is kept.
func (s *TCPStream) SetPeer(side Side, p TCPPeer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	l := &s.legs[side]
	l.peer = &p
	waiting := l.waiting
	l.waiting = nil
	for _, w := range waiting {
		w.timer.Stop()
		s.admitLocked(side, w.c, w.src)
	}
}

func (s *TCPStream) acceptLoop(side Side) {
	defer s.wg.Done()
	l := &s.legs[side]
	for {
		c, err := l.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and the like: do not spin
			continue
		}
		src := tcpAddrPort(c.RemoteAddr()).Addr()
		s.mu.Lock()
		switch {
		case s.closed:
			refuse(c)
		case l.peer == nil && len(l.waiting) < tcpMaxPending:
			pc := pendingConn{c: c, src: src}
			pc.timer = time.AfterFunc(s.pending, func() { s.expire(side, c) })
			l.waiting = append(l.waiting, pc)
		case l.peer == nil:
			s.refuseLocked(side, c, src, "too many connections before the leg's SDP")
		default:
			s.admitLocked(side, c, src)
		}
		s.mu.Unlock()
	}
}

// expire refuses a connection that waited too long for its leg's SDP.
func (s *TCPStream) expire(side Side, c *net.TCPConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := &s.legs[side]
	for i, w := range l.waiting {
		if w.c == c {
			l.waiting = append(l.waiting[:i], l.waiting[i+1:]...)
			s.refuseLocked(side, c, w.src, "no SDP for the leg in time")
			return
		}
	}
}

// admitLocked takes c as side's connection if its source is allowed and the
// leg has none, and starts the splice when both legs are connected.
func (s *TCPStream) admitLocked(side Side, c *net.TCPConn, src netip.Addr) {
	l := &s.legs[side]
	switch {
	case !l.peer.allows(src):
		s.refuseLocked(side, c, src, "source is neither the signalled nor the registered address")
		return
	case l.conn != nil:
		s.refuseLocked(side, c, src, "leg already connected")
		return
	}
	l.conn = c
	a, b := s.legs[SideA].conn, s.legs[SideB].conn
	if a == nil || b == nil {
		return
	}
	sp := &splice{conns: [2]*net.TCPConn{a, b}}
	for i := range sp.conns {
		s.wg.Add(1)
		go s.pump(sp, Side(i))
	}
}

func (s *TCPStream) refuseLocked(side Side, c *net.TCPConn, src netip.Addr, why string) {
	s.legs[side].ctr.dropped.Add(1)
	refuse(c)
	if s.dropLog.allow() {
		s.log.Warn("relay refused TCP connection", "side", side.String(), "port", s.legs[side].pair.Port(), "src", src, "reason", why)
	}
}

// refuse resets c: no FIN handshake, no TIME_WAIT on our side.
func refuse(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}

// splice is one pair of connected legs; its two pumps end it together.
type splice struct {
	conns [2]*net.TCPConn
	mu    sync.Mutex
	ended int // directions that reached EOF
}

// pump copies what leg from sends to the other leg until either fails.
func (s *TCPStream) pump(sp *splice, from Side) {
	defer s.wg.Done()
	src, dst := sp.conns[from], sp.conns[from.Other()]
	ctr := &s.legs[from].ctr
	buf := make([]byte, tcpBuffer)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			ctr.packets.Add(1)
			ctr.bytes.Add(uint64(n))
			ctr.lastRTP.Store(mono())
			if _, werr := dst.Write(buf[:n]); werr != nil {
				s.end(sp)
				return
			}
		}
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) {
			_ = dst.CloseWrite() // pass the half-close on
			sp.mu.Lock()
			sp.ended++
			both := sp.ended == 2
			sp.mu.Unlock()
			if both {
				s.end(sp)
			}
			return
		}
		s.end(sp)
		return
	}
}

// end closes both connections of sp and frees the legs for new ones.
func (s *TCPStream) end(sp *splice) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range sp.conns {
		_ = c.Close()
		if s.legs[i].conn == c {
			s.legs[i].conn = nil
		}
	}
}

// Connected returns the remote address of side's connection, if any.
func (s *TCPStream) Connected(side Side) (netip.AddrPort, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.legs[side].conn; c != nil {
		ap := tcpAddrPort(c.RemoteAddr())
		return ap, ap.IsValid()
	}
	return netip.AddrPort{}, false
}

// tcpAddrPort returns a TCP address unmapped (a wildcard-bound listener
// reports IPv4 peers as ::ffff:a.b.c.d); zero if it is not one.
func tcpAddrPort(a net.Addr) netip.AddrPort {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// LastRTP returns the last time bytes arrived from either leg, or the
// stream's creation time if none have. It feeds the media timeout like the
// UDP streams' LastRTP.
func (s *TCPStream) LastRTP() time.Time {
	return monoTime(max(s.started, s.legs[0].ctr.lastRTP.Load(), s.legs[1].ctr.lastRTP.Load()))
}

// Stats returns the stream's counters in the UDP streams' shape: Packets
// counts reads relayed (TCP segments, roughly one per BFCP message), Bytes
// the bytes relayed, Dropped the connections refused on that leg's port;
// LatchedA/B are the connected legs' addresses.
func (s *TCPStream) Stats() Stats {
	la, _ := s.Connected(SideA)
	lb, _ := s.Connected(SideB)
	return Stats{
		AToB: s.legs[0].ctr.snapshot(), BToA: s.legs[1].ctr.snapshot(),
		LatchedA: la, LatchedB: lb, PortA: s.LocalPort(SideA), PortB: s.LocalPort(SideB),
	}
}

// Close closes the listeners and every connection, waits for the
// goroutines and releases both pairs to the pool, where they drain.
// Idempotent.
func (s *TCPStream) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for i := range s.legs {
		l := &s.legs[i]
		_ = l.ln.Close()
		if l.conn != nil {
			_ = l.conn.Close()
			l.conn = nil
		}
		for _, w := range l.waiting {
			w.timer.Stop()
			refuse(w.c)
		}
		l.waiting = nil
	}
	s.mu.Unlock()
	s.wg.Wait()
	for i := range s.legs {
		s.legs[i].pair.Release()
	}
}
