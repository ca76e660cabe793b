package relay

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// newTestPool returns a pool over a random 40-port window, closed on cleanup.
func newTestPool(t testing.TB, drain time.Duration) *Pool {
	t.Helper()
	base := 20000 + 2*rand.IntN(15000)
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
type endpoint struct {
	t    testing.TB
	conn *net.UDPConn
}

func newEndpoint(t testing.TB) *endpoint {
	t.Helper()
	return newEndpointOn(t, loopback)
}

// newEndpointOn is an endpoint on another loopback address (another host, for the relay).
func newEndpointOn(t testing.TB, ip netip.Addr) *endpoint {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &endpoint{t: t, conn: c}
}

func (e *endpoint) addr() netip.AddrPort { return e.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func rtpPacket(pt uint8, seq uint16, ts, ssrc uint32, payload string) []byte {
	b := make([]byte, 12+len(payload))
	b[0] = 0x80
	b[1] = pt
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[4:], ts)
	binary.BigEndian.PutUint32(b[8:], ssrc)
	copy(b[12:], payload)
	return b
}

func rtcpPacket(pt uint8) []byte {
	return []byte{0x81, pt, 0, 1, 0, 0, 0, 42}
}

func (e *endpoint) send(to netip.AddrPort, b []byte) {
	e.t.Helper()
	if _, err := e.conn.WriteToUDPAddrPort(b, to); err != nil {
		e.t.Fatal(err)
	}
}

// recv waits up to d for one datagram; ok is false on timeout.
func (e *endpoint) recv(d time.Duration) ([]byte, netip.AddrPort, bool) {
	e.t.Helper()
	buf := make([]byte, 2048)
	_ = e.conn.SetReadDeadline(time.Now().Add(d))
	n, src, err := e.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, src, false
		}
		e.t.Fatal(err)
	}
	return buf[:n], src, true
}

// mustRecv waits for a datagram or fails.
func (e *endpoint) mustRecv() []byte {
	e.t.Helper()
	b, _, ok := e.recv(2 * time.Second)
	if !ok {
		e.t.Fatal("no packet received")
	}
	return b
}

// eventually polls cond until it holds or fails after 5 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkGoroutines fails the test if goroutines started during it outlive it.
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		eventually(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
	})
}

func local(p *Pair) netip.AddrPort { return netip.AddrPortFrom(loopback, uint16(p.Port())) }
func localRTCP(p *Pair) netip.AddrPort {
	return netip.AddrPortFrom(loopback, uint16(p.Port()+1))
}
