package turn

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-sbc/portcullis/media/relay"
)

// generator is a pion RelayAddressGenerator over the shared relay pool.
// One generator serves one listener; pending carries the user of the
// Allocate request being handled on that listener's read goroutine.
type generator struct {
	s       *Server
	pending atomic.Pointer[string]
}

func (g *generator) Validate() error { return nil }

func (g *generator) AllocatePacketConn(network string, requestedPort int) (net.PacketConn, net.Addr, error) {
	s := g.s
	user := ""
	if p := g.pending.Load(); p != nil {
		user = *p
	}
	if network != "udp4" && network != "udp" {
		return nil, nil, fmt.Errorf("%w: network %s", ErrBadConfig, network)
	}
	if !s.reserve(user) {
		s.refused.Add(1)
		return nil, nil, ErrQuota
	}
	var pr *relay.Pair
	var err error
	if requestedPort != 0 {
		pr, err = s.pool.AcquirePort(requestedPort) // range and parity checked by the pool
	} else {
		pr, err = s.pool.Acquire()
	}
	if err != nil {
		s.unreserve(user)
		s.refused.Add(1)
		return nil, nil, err
	}
	s.total.Add(1)
	c := &relayConn{UDPConn: pr.RTP, pair: pr, s: s, user: user}
	return c, &net.UDPAddr{IP: s.relayIP.AsSlice(), Port: pr.Port()}, nil
}

func (g *generator) AllocateConn(string, int) (net.Conn, net.Addr, error) {
	return nil, nil, fmt.Errorf("%w: TCP relaying (RFC 6062) is not supported", ErrBadConfig)
}

// relayConn is an allocation's relay socket. Close returns the pair to the
// pool (draining if the socket was ever read) and frees the quota slot.
type relayConn struct {
	*net.UDPConn
	pair   *relay.Pair
	s      *Server
	user   string
	read   atomic.Bool
	closed atomic.Bool
	once   sync.Once
}

func (c *relayConn) ReadFrom(b []byte) (int, net.Addr, error) {
	if c.closed.Load() {
		return 0, nil, net.ErrClosed
	}
	c.read.Store(true)
	n, addr, err := c.UDPConn.ReadFrom(b)
	if c.closed.Load() {
		return 0, nil, net.ErrClosed
	}
	return n, addr, err
}

func (c *relayConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, fmt.Errorf("%w: %v", ErrPeerDenied, addr)
	}
	ip, _ := netip.AddrFromSlice(ua.IP)
	if !c.s.peers.Allowed(ip) { // defence in depth behind the PermissionHandler
		return 0, fmt.Errorf("%w: %v", ErrPeerDenied, addr)
	}
	return c.UDPConn.WriteTo(b, addr)
}

func (c *relayConn) Close() error {
	c.once.Do(func() {
		c.closed.Store(true)
		_ = c.UDPConn.SetReadDeadline(time.Now()) // wake pion's reader
		if c.read.Load() {
			c.pair.Release()
		} else {
			c.pair.ReleaseNow() // never carried traffic (pion's GetRandomEvenPort probe)
			c.s.total.Add(^uint64(0))
		}
		c.s.unreserve(c.user)
	})
	return nil
}
