// Package testutil holds the helpers that the tests of several packages share: waiting on a
// condition with a deadline (never sleeping and asserting), checking that a test leaves no
// goroutine behind, a UDP endpoint on a loopback address and an RTP packet builder. It is not
// API: only tests import it.
package testutil

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"
)

// Wait is how long Eventually waits: generous, for -race builds on a loaded 2-core machine.
const Wait = 10 * time.Second

// Eventually polls cond until it holds, failing the test after Wait.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	EventuallyWithin(t, Wait, what, cond)
}

// EventuallyWithin polls cond until it holds, failing the test after d.
func EventuallyWithin(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// CheckGoroutines fails the test if the goroutines started during it outlive it (waiting for
// them to exit first).
func CheckGoroutines(t testing.TB) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		Eventually(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
	})
}

// Loopback is 127.0.0.1.
var Loopback = netip.MustParseAddr("127.0.0.1")

// Endpoint is a UDP socket on a loopback address (a media endpoint of a fake peer), closed when
// the test ends.
type Endpoint struct {
	T    testing.TB
	Conn *net.UDPConn
}

// NewEndpoint binds an endpoint on ip (any 127.x.y.z) with a free port.
func NewEndpoint(t testing.TB, ip netip.Addr) *Endpoint {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &Endpoint{T: t, Conn: c}
}

// Addr is the endpoint's address.
func (e *Endpoint) Addr() netip.AddrPort { return e.Conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Port is the endpoint's port.
func (e *Endpoint) Port() int { return int(e.Addr().Port()) }

// Send writes one datagram to to.
func (e *Endpoint) Send(to netip.AddrPort, b []byte) {
	e.T.Helper()
	if _, err := e.Conn.WriteToUDPAddrPort(b, to); err != nil {
		e.T.Fatal(err)
	}
}

// Recv waits up to d for one datagram; ok is false when none came.
func (e *Endpoint) Recv(d time.Duration) (b []byte, src netip.AddrPort, ok bool) {
	e.T.Helper()
	buf := make([]byte, 2048)
	_ = e.Conn.SetReadDeadline(time.Now().Add(d))
	n, src, err := e.Conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, src, false
		}
		e.T.Fatal(err)
	}
	return buf[:n], src, true
}

// RTP builds an RTP packet (version 2, no CSRC, no extension) with the payload.
func RTP(pt uint8, seq uint16, ts, ssrc uint32, payload string) []byte {
	b := make([]byte, 12+len(payload))
	b[0], b[1] = 0x80, pt
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[4:], ts)
	binary.BigEndian.PutUint32(b[8:], ssrc)
	copy(b[12:], payload)
	return b
}

// DigestAnswer answers a digest challenge (a WWW-Authenticate or Proxy-Authenticate value) as a
// UA does, for method and uri: the value of the Authorization or Proxy-Authorization header.
func DigestAnswer(challenge, method, uri, user, password string) (string, error) {
	chal, err := digest.ParseChallenge(challenge)
	if err != nil {
		return "", err
	}
	chal.Algorithm = strings.ToUpper(chal.Algorithm)
	cred, err := digest.Digest(chal, digest.Options{Method: method, URI: uri, Username: user, Password: password, Count: 1})
	if err != nil {
		return "", err
	}
	return cred.String(), nil
}
