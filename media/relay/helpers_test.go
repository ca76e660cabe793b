package relay

import (
	"net/netip"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/internal/testutil"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// newTestPool returns a pool over a free 40-port window outside the ephemeral ports (a random
// window inside them collided with other sockets' ports: "port pool exhausted", a TCP port
// taken), closed on cleanup.
func newTestPool(t testing.TB, drain time.Duration) *Pool {
	t.Helper()
	base := testutil.PortWindow(t, loopback, 40)
	p, err := NewPool(PoolConfig{Bind: loopback, Min: base, Max: base + 39, Drain: drain})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func acquire(t testing.TB, p *Pool) *Pair {
	t.Helper()
	pr, err := p.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	return pr
}

// endpoint is a fake media endpoint on loopback.
type endpoint struct{ *testutil.Endpoint }

func newEndpoint(t testing.TB) *endpoint {
	t.Helper()
	return newEndpointOn(t, loopback)
}

// newEndpointOn is an endpoint on another loopback address (another host, for the relay).
func newEndpointOn(t testing.TB, ip netip.Addr) *endpoint {
	t.Helper()
	return &endpoint{testutil.NewEndpoint(t, ip)}
}

func (e *endpoint) addr() netip.AddrPort { return e.Addr() }

func rtpPacket(pt uint8, seq uint16, ts, ssrc uint32, payload string) []byte {
	return testutil.RTP(pt, seq, ts, ssrc, payload)
}

func rtcpPacket(pt uint8) []byte {
	return []byte{0x81, pt, 0, 1, 0, 0, 0, 42}
}

func (e *endpoint) send(to netip.AddrPort, b []byte) {
	e.T.Helper()
	e.Send(to, b)
}

// recv waits up to d for one datagram; ok is false on timeout.
func (e *endpoint) recv(d time.Duration) ([]byte, netip.AddrPort, bool) {
	e.T.Helper()
	return e.Recv(d)
}

// mustRecv waits for a datagram or fails.
func (e *endpoint) mustRecv() []byte {
	e.T.Helper()
	b, _, ok := e.recv(2 * time.Second)
	if !ok {
		e.T.Fatal("no packet received")
	}
	return b
}

func local(p *Pair) netip.AddrPort { return netip.AddrPortFrom(loopback, uint16(p.Port())) }
func localRTCP(p *Pair) netip.AddrPort {
	return netip.AddrPortFrom(loopback, uint16(p.Port()+1))
}
