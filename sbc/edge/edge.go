package edge

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Admit decides whether packets from a source (address and port: a registered flow may pass
// where the rest of its address is banned) may reach the SIP stack. It must be cheap and must
// not allocate: it runs for every datagram.
type Admit func(src netip.AddrPort) bool

// Limits are the abuse limits of the edge.
type Limits struct {
	MaxMessageSize    int           // bytes; larger datagrams are dropped, larger stream messages close the connection
	ReadTimeout       time.Duration // a started stream message must complete within this
	IdleTimeout       time.Duration // a stream connection with no traffic is closed after this
	MaxConnsPerSource int           // open TCP/TLS connections per source IP
	MaxConnsPerPrefix int           // open TCP/TLS connections per IPv6 /64; 0: no cap
	MaxConns          int           // open TCP/TLS connections of all listeners sharing the Stats; 0: no cap
}

// Stats counts what the edge refused. All fields are updated atomically.
type Stats struct {
	DroppedSource   atomic.Uint64 // datagrams/connections refused by Admit
	DroppedRate     atomic.Uint64 // datagrams over their source's rate (Meter)
	DroppedOversize atomic.Uint64 // datagrams over the size limit
	DroppedNotSIP   atomic.Uint64 // datagrams that are not SIP (Classify), dropped before parsing
	DroppedSTUN     atomic.Uint64 // STUN datagrams on a SIP port, kept from the SIP parser (answered or not)
	STUNAnswered    atomic.Uint64 // STUN Binding requests (RFC 5626 keepalives) answered
	RefusedConns    atomic.Uint64 // connections over the per-source cap
	RefusedPrefix   atomic.Uint64 // connections over the per-/64 cap (IPv6)
	RefusedGlobal   atomic.Uint64 // connections over the global cap
	OpenConns       atomic.Int64  // open TCP/TLS connections (of the listeners sharing these Stats)
	Accepted        atomic.Uint64 // TCP/TLS connections accepted and handed to the SIP stack
	ClosedSlow      atomic.Uint64 // connections closed for a message that took too long
	ClosedIdle      atomic.Uint64 // connections closed idle
	ClosedTooLarge  atomic.Uint64 // connections closed for an oversized or badly framed message
	ClosedRate      atomic.Uint64 // connections closed for messages over their source's rate (Meter)

	mu    sync.Mutex
	conns []*PacketConn // for the kernel's receive-queue drops (Collector)
}

// NotSIP is told about a datagram that is not SIP, with its first bytes (at most 32; the slice
// is only valid during the call). It runs on the socket's read loop: it must be quick.
type NotSIP func(src netip.AddrPort, head []byte)

// Meter decides, for every admitted datagram (or complete stream message) before anything
// parses it, whether its source is within its rate. It runs on the read loop: it must be quick
// and should not allocate for a known source.
type Meter func(src netip.AddrPort) bool

// Tap is told about every message written to the network: the transport ("UDP", "TCP" or
// "TLS"), the peer and the bytes, only valid during the call. It runs on the writer's
// goroutine (tests capture what a node sends with it).
type Tap func(transport string, to net.Addr, msg []byte)

// PacketConn filters datagrams before sipgo reads them.
type PacketConn struct {
	*net.UDPConn
	admit  Admit
	limits Limits
	stats  *Stats
	notSIP NotSIP
	meter  Meter
	tap    Tap
	stun   [stunResponseMax]byte // the STUN response being written (the single read loop's)
}

// SetTap sets the function told about every datagram written. Call it before the first write.
func (c *PacketConn) SetTap(f Tap) { c.tap = f }

// OnNotSIP sets the function told about datagrams that are not SIP. Call it before the first
// read.
func (c *PacketConn) OnNotSIP(f NotSIP) { c.notSIP = f }

// SetMeter sets the per-source datagram rate check. Call it before the first read.
func (c *PacketConn) SetMeter(m Meter) { c.meter = m }

// NewPacketConn wraps a UDP socket.
func NewPacketConn(c *net.UDPConn, admit Admit, limits Limits, stats *Stats) *PacketConn {
	pc := &PacketConn{UDPConn: c, admit: admit, limits: limits, stats: stats}
	stats.mu.Lock()
	stats.conns = append(stats.conns, pc)
	stats.mu.Unlock()
	return pc
}

// ReadFrom returns the next datagram that is admitted, within its source's rate and the size
// limit, and SIP (or a keepalive). Refused datagrams are read into b and discarded without allocating.
func (c *PacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, ap, err := c.UDPConn.ReadFromUDPAddrPort(b)
		if err != nil {
			return n, nil, err
		}
		src := ap.Addr().Unmap()
		if c.admit != nil && !c.admit(netip.AddrPortFrom(src, ap.Port())) {
			c.stats.DroppedSource.Add(1)
			continue
		}
		if c.meter != nil && !c.meter(netip.AddrPortFrom(src, ap.Port())) {
			c.stats.DroppedRate.Add(1)
			continue
		}
		if n > c.limits.MaxMessageSize {
			c.stats.DroppedOversize.Add(1)
			continue
		}
		switch Classify(b[:n]) {
		case DatagramSTUN:
			c.stats.DroppedSTUN.Add(1)
			// An RFC 5626 keepalive: answered from here, the SIP stack never sees it.
			if k := BindingResponse(c.stun[:], b[:n], netip.AddrPortFrom(src, ap.Port())); k > 0 {
				if _, err := c.UDPConn.WriteToUDPAddrPort(c.stun[:k], ap); err == nil {
					c.stats.STUNAnswered.Add(1)
				}
			}
			continue
		case DatagramNotSIP:
			c.stats.DroppedNotSIP.Add(1)
			if c.notSIP != nil {
				c.notSIP(netip.AddrPortFrom(src, ap.Port()), b[:min(n, 32)])
			}
			continue
		}
		return n, net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, ap.Port())), nil
	}
}

// WriteTo sends one datagram. A message over the size limit is refused with
// ErrMessageTooLarge: what the node sends over UDP is bounded by the same limit as what it
// accepts (sip.max_message_size). Larger than the path MTU is fine: the kernel fragments it.
func (c *PacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if len(b) > c.limits.MaxMessageSize {
		return 0, fmt.Errorf("%w: %d bytes to %s (limit %d)", ErrMessageTooLarge, len(b), addr, c.limits.MaxMessageSize)
	}
	if c.tap != nil {
		c.tap("UDP", addr, b)
	}
	return c.UDPConn.WriteTo(b, addr)
}

// FlowClosed is told when a stream connection closes: transport ("TCP" or "TLS") and the peer.
type FlowClosed func(transport string, remote netip.AddrPort)

// Listener wraps a TCP (or TLS) listener: admission, per-source, per-/64 and global caps,
// deadlines, close reports.
type Listener struct {
	net.Listener
	transport string
	admit     Admit
	limits    Limits
	stats     *Stats
	onClose   FlowClosed
	log       *slog.Logger
	meter     Meter
	tap       Tap

	mu     sync.Mutex
	perIP  map[netip.Addr]int
	perPfx map[netip.Addr]int // IPv6 sources by their /64 (its first address)
}

// NewListener wraps l. transport is "TCP" or "TLS" (for close reports); onClose may be nil.
func NewListener(l net.Listener, transport string, admit Admit, limits Limits, stats *Stats,
	onClose FlowClosed, log *slog.Logger) *Listener {
	return &Listener{Listener: l, transport: transport, admit: admit, limits: limits, stats: stats,
		onClose: onClose, log: log, perIP: map[netip.Addr]int{}, perPfx: map[netip.Addr]int{}}
}

// prefix64 is the /64 of an IPv6 address (its first address); ok is false for IPv4.
func prefix64(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() {
		return netip.Addr{}, false
	}
	p, _ := a.WithZone("").Prefix(64)
	return p.Addr(), true
}

// Accept returns the next admitted connection. Refused connections are closed here and never
// reach sipgo (an error from Accept would stop sipgo's accept loop, so none is returned for them).
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
		if err != nil {
			c.Close()
			continue
		}
		src := ap.Addr().Unmap()
		if l.admit != nil && !l.admit(netip.AddrPortFrom(src, ap.Port())) {
			l.stats.DroppedSource.Add(1)
			c.Close()
			continue
		}
		if refused := l.take(src); refused != nil {
			refused.Add(1)
			c.Close()
			continue
		}
		l.stats.Accepted.Add(1)
		return &Conn{Conn: c, l: l, remote: netip.AddrPortFrom(src, ap.Port()), accepted: time.Now(),
			framer: newFramer(l.limits.MaxMessageSize)}, nil
	}
}

// take counts a new connection from src against the caps, or returns the counter of the cap it
// is over (the connection is then refused and not counted). The global cap is counted in Stats,
// so it holds across all the listeners that share them (a node's).
func (l *Listener) take(src netip.Addr) *atomic.Uint64 {
	if open := l.stats.OpenConns.Add(1); l.limits.MaxConns > 0 && open > int64(l.limits.MaxConns) {
		l.stats.OpenConns.Add(-1)
		return &l.stats.RefusedGlobal
	}
	pfx, v6 := prefix64(src)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.perIP[src] >= l.limits.MaxConnsPerSource:
		l.stats.OpenConns.Add(-1)
		return &l.stats.RefusedConns
	case v6 && l.limits.MaxConnsPerPrefix > 0 && l.perPfx[pfx] >= l.limits.MaxConnsPerPrefix:
		l.stats.OpenConns.Add(-1)
		return &l.stats.RefusedPrefix
	}
	l.perIP[src]++
	if v6 {
		l.perPfx[pfx]++
	}
	return nil
}

// SetMeter sets the per-source rate check applied to every complete message read from a
// connection; a connection whose peer goes over its rate is closed. Call it before Accept.
func (l *Listener) SetMeter(m Meter) { l.meter = m }

// SetTap sets the function told about every write on accepted connections (sipgo writes one
// message per Write). Call it before Accept.
func (l *Listener) SetTap(f Tap) { l.tap = f }

func (l *Listener) release(c *Conn) {
	src := c.remote.Addr()
	l.stats.OpenConns.Add(-1)
	l.mu.Lock()
	if l.perIP[src]--; l.perIP[src] <= 0 {
		delete(l.perIP, src)
	}
	if pfx, ok := prefix64(src); ok {
		if l.perPfx[pfx]--; l.perPfx[pfx] <= 0 {
			delete(l.perPfx, pfx)
		}
	}
	l.mu.Unlock()
	if l.onClose != nil {
		l.onClose(l.transport, c.remote)
	}
}

// Conn is an accepted stream connection with per-message deadlines.
type Conn struct {
	net.Conn
	l        *Listener
	remote   netip.AddrPort
	framer   *framer // used only by the single reading goroutine
	msgStart time.Time
	accepted time.Time // until a first message is complete, the connection has ReadTimeout from here
	once     sync.Once
}

// Remote is the peer address.
func (c *Conn) Remote() netip.AddrPort { return c.remote }

// Read reads with a deadline: the idle timeout between messages, and what is left of the read
// timeout while a message is in progress. Until a first message is complete (TLS handshake,
// first request) the connection as a whole has the read timeout: CRLF keepalives on a
// connection that never sent a message do not hold it open. A message over the size limit
// closes the connection.
func (c *Conn) Read(b []byte) (int, error) {
	now := time.Now()
	deadline := now.Add(c.l.limits.IdleTimeout)
	inMsg := !c.msgStart.IsZero()
	switch {
	case inMsg:
		deadline = c.msgStart.Add(c.l.limits.ReadTimeout)
	case c.framer.done == 0:
		deadline = c.accepted.Add(c.l.limits.ReadTimeout)
		inMsg = true
	}
	if err := c.Conn.SetReadDeadline(deadline); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(b)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if inMsg {
				c.l.stats.ClosedSlow.Add(1)
				err = ErrMessageTimeout
			} else {
				c.l.stats.ClosedIdle.Add(1)
			}
		}
		c.Close()
		return n, err
	}
	before := c.framer.done
	busy, ferr := c.framer.feed(b[:n])
	if ferr != nil {
		c.l.stats.ClosedTooLarge.Add(1)
		c.l.log.Debug("closing stream connection", "remote", c.remote, "error", ferr)
		c.Close()
		return 0, ferr
	}
	if m := c.l.meter; m != nil {
		for range c.framer.done - before {
			if !m(c.remote) {
				c.l.stats.ClosedRate.Add(1)
				c.l.log.Debug("closing stream connection", "remote", c.remote, "error", ErrOverRate)
				c.Close()
				return 0, ErrOverRate
			}
		}
	}
	switch {
	case busy && c.msgStart.IsZero():
		c.msgStart = now
	case !busy:
		c.msgStart = time.Time{}
	}
	return n, nil
}

// Write writes to the peer, telling the listener's tap.
func (c *Conn) Write(b []byte) (int, error) {
	if c.l.tap != nil {
		c.l.tap(c.l.transport, c.Conn.RemoteAddr(), b)
	}
	return c.Conn.Write(b)
}

// SetReadDeadline is ignored: the edge owns read deadlines.
func (c *Conn) SetReadDeadline(time.Time) error { return nil }

// SetDeadline sets only the write deadline: the edge owns read deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(t) }

// Close closes the connection and reports it once.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c) })
	return err
}
