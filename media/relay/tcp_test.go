package relay

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/internal/testutil"
)

// bfcp returns a BFCP message for a reliable transport (RFC 8855: version 1,
// primitive, payload length in 4-byte units, conference/transaction/user
// ids) with a payload of words 4-byte words.
func bfcp(prim uint8, tid uint16, words int) []byte {
	b := make([]byte, 12+4*words)
	b[0], b[1] = 1<<5, prim
	binary.BigEndian.PutUint16(b[2:], uint16(words))
	binary.BigEndian.PutUint32(b[4:], 1)
	binary.BigEndian.PutUint16(b[8:], tid)
	binary.BigEndian.PutUint16(b[10:], 7)
	for i := 12; i < len(b); i++ {
		b[i] = byte(i)
	}
	return b
}

func newTCPStream(t *testing.T, p *Pool, cfg TCPConfig) *TCPStream {
	t.Helper()
	s := openTCPStream(t, p, cfg)
	t.Cleanup(s.Close)
	return s
}

// openTCPStream opens a TCP stream on two pairs of p. Ports are picked at random and the pool's
// range overlaps the kernel's ephemeral ports, so another socket of the test process may hold
// one of them: like the media session, it then tries other pairs (handing the refused ones back).
func openTCPStream(t *testing.T, p *Pool, cfg TCPConfig) *TCPStream {
	t.Helper()
	var err error
	for range 8 {
		a, b := acquire(t, p), acquire(t, p)
		var s *TCPStream
		if s, err = NewTCPStream(a, b, cfg); err == nil {
			return s
		}
		a.ReleaseNow()
		b.ReleaseNow()
		if !errors.Is(err, ErrPortUnavailable) {
			break
		}
	}
	t.Fatal(err)
	return nil
}

func tcpAddr(s *TCPStream, side Side) string {
	return netip.AddrPortFrom(loopback, uint16(s.LocalPort(side))).String()
}

// dialFrom connects to the relay from the loopback address ip.
func dialFrom(t *testing.T, ip string, to string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 3 * time.Second}
	c, err := d.Dial("tcp", to)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", to, ip, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*net.TCPConn)
}

// mustRead reads exactly len(want) bytes and compares.
func mustRead(t *testing.T, c net.Conn, want []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %v: got % x, want % x", err, got, want)
	}
}

// refused connects from ip and checks that the relay resets the connection
// without relaying anything; the reset may already show in connect.
func refused(t *testing.T, ip, to, what string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 3 * time.Second}
	c, err := d.Dial("tcp", to)
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = c.Write(bfcp(11, 666, 0))
	closedByRelay(t, c, what)
}

// closedByRelay waits for the relay to close or reset c (EOF or an error, not a timeout).
func closedByRelay(t *testing.T, c net.Conn, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 256)
	for {
		n, err := c.Read(buf)
		if err == nil {
			t.Fatalf("%s: relay delivered %d bytes: % x", what, n, buf[:n])
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%s: connection still open", what)
		}
		return
	}
}

// TestTCPStreamSplicesBFCP: leg A connects and sends a BFCP Hello before leg
// B is there; the Hello waits; B connects, receives it and answers with a
// HelloAck; bytes and reads are counted per direction and the connected
// addresses show in the stats.
func TestTCPStreamSplicesBFCP(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newTestPool(t, 50*time.Millisecond)
	s := newTCPStream(t, p, TCPConfig{})
	start := s.LastRTP()
	s.SetPeer(SideA, TCPPeer{Addr: loopback})
	s.SetPeer(SideB, TCPPeer{Addr: loopback})

	a := dialFrom(t, "127.0.0.1", tcpAddr(s, SideA))
	hello := bfcp(11, 1, 0)
	if _, err := a.Write(hello); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "A connected", func() bool { _, ok := s.Connected(SideA); return ok })
	b := dialFrom(t, "127.0.0.1", tcpAddr(s, SideB))
	mustRead(t, b, hello)
	ack := bfcp(12, 1, 10) // HelloAck with SUPPORTED-PRIMITIVES/-ATTRIBUTES: 40 bytes of attributes
	if _, err := b.Write(ack); err != nil {
		t.Fatal(err)
	}
	mustRead(t, a, ack)
	// a burst of floor requests both ways, written at once
	var burst []byte
	for i := range 50 {
		burst = append(burst, bfcp(1, uint16(100+i), 3)...)
	}
	if _, err := a.Write(burst); err != nil {
		t.Fatal(err)
	}
	mustRead(t, b, burst)

	st := s.Stats()
	if st.AToB.Bytes != uint64(len(hello)+len(burst)) || st.BToA.Bytes != uint64(len(ack)) ||
		st.AToB.Packets == 0 || st.BToA.Packets != 1 || st.AToB.Dropped+st.BToA.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
	if st.LatchedA != a.LocalAddr().(*net.TCPAddr).AddrPort() || st.LatchedB != b.LocalAddr().(*net.TCPAddr).AddrPort() ||
		st.PortA != s.LocalPort(SideA) || st.PortB != s.LocalPort(SideB) || st.PortA == st.PortB {
		t.Fatalf("addresses %+v", st)
	}
	if !s.LastRTP().After(start) {
		t.Fatal("activity not recorded")
	}
}

// TestTCPStreamRefusesStrangers: only the signalled IP and the registered
// (preferred) IP may connect, once per leg; a stranger, a second connection
// and an unsignalled leg's connection are reset and counted, and none of
// their bytes reach the other leg.
func TestTCPStreamRefusesStrangers(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newTestPool(t, 50*time.Millisecond)
	s := newTCPStream(t, p, TCPConfig{})
	// A signals a private address behind NAT and registered from 127.0.0.77.
	s.SetPeer(SideA, TCPPeer{Addr: netip.MustParseAddr("10.1.2.3"), Preferred: netip.MustParseAddr("127.0.0.77")})
	s.SetPeer(SideB, TCPPeer{Addr: loopback})

	refused(t, "127.0.0.66", tcpAddr(s, SideA), "stranger on A's port")
	refused(t, "127.0.0.66", tcpAddr(s, SideB), "stranger on B's port")
	// 127.0.0.1 is neither A's signalled nor its registered address.
	refused(t, "127.0.0.1", tcpAddr(s, SideA), "unsignalled address on A's port")

	a := dialFrom(t, "127.0.0.77", tcpAddr(s, SideA))
	b := dialFrom(t, "127.0.0.1", tcpAddr(s, SideB))
	testutil.Eventually(t, "both legs connected", func() bool {
		_, okA := s.Connected(SideA)
		_, okB := s.Connected(SideB)
		return okA && okB
	})
	refused(t, "127.0.0.1", tcpAddr(s, SideB), "second connection on B's port")

	msg := bfcp(11, 1, 2)
	if _, err := a.Write(msg); err != nil {
		t.Fatal(err)
	}
	mustRead(t, b, msg) // the first bytes B sees are A's, nothing of the strangers'
	testutil.Eventually(t, "refusals counted", func() bool {
		st := s.Stats()
		return st.AToB.Dropped == 2 && st.BToA.Dropped == 2
	})
}

// TestTCPStreamWaitsForSDP: the callee connects before its answer reaches
// the relay; its connection waits and is admitted when SetPeer arrives,
// while a stranger waiting alongside is refused then. A connection whose
// SDP never comes is refused after Pending, and no more than tcpMaxPending
// may wait.
func TestTCPStreamWaitsForSDP(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newTestPool(t, 50*time.Millisecond)
	s := newTCPStream(t, p, TCPConfig{Pending: 5 * time.Second})
	s.SetPeer(SideA, TCPPeer{Addr: loopback})
	a := dialFrom(t, "127.0.0.1", tcpAddr(s, SideA))
	early := dialFrom(t, "127.0.0.1", tcpAddr(s, SideB))
	stranger := dialFrom(t, "127.0.0.66", tcpAddr(s, SideB))
	hello := bfcp(11, 1, 0)
	if _, err := early.Write(hello); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "two connections waiting", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.legs[SideB].waiting) == 2
	})
	s.SetPeer(SideB, TCPPeer{Addr: loopback})
	closedByRelay(t, stranger, "stranger waiting for B's SDP")
	mustRead(t, a, hello)
	if st := s.Stats(); st.BToA.Dropped != 1 || st.BToA.Bytes != uint64(len(hello)) {
		t.Fatalf("stats %+v", st)
	}

	s2 := newTCPStream(t, p, TCPConfig{Pending: 200 * time.Millisecond})
	var waiting []*net.TCPConn
	for range tcpMaxPending {
		waiting = append(waiting, dialFrom(t, "127.0.0.1", tcpAddr(s2, SideB)))
	}
	refused(t, "127.0.0.1", tcpAddr(s2, SideB), "connection over the waiting limit")
	for _, c := range waiting {
		closedByRelay(t, c, "connection without SDP")
	}
	if st := s2.Stats(); st.BToA.Dropped != tcpMaxPending+1 {
		t.Fatalf("refusals %d, want %d", st.BToA.Dropped, tcpMaxPending+1)
	}
}

// TestTCPStreamCloseMirrorsAndReconnects: when one leg closes, the relay
// passes the close on to the other leg and, once both are closed, accepts
// new connections from both (a=connection:new in a re-INVITE, or a client
// that reconnects).
func TestTCPStreamCloseMirrorsAndReconnects(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newTestPool(t, 50*time.Millisecond)
	s := newTCPStream(t, p, TCPConfig{})
	s.SetPeer(SideA, TCPPeer{Addr: loopback})
	s.SetPeer(SideB, TCPPeer{Addr: loopback})
	for round := range 3 {
		a := dialFrom(t, "127.0.0.1", tcpAddr(s, SideA))
		b := dialFrom(t, "127.0.0.1", tcpAddr(s, SideB))
		msg := bfcp(11, uint16(round), 1)
		if _, err := a.Write(msg); err != nil {
			t.Fatal(err)
		}
		mustRead(t, b, msg)
		if round == 2 {
			_ = b.SetLinger(0) // an abort (RST) instead of a close
		}
		_ = b.Close()
		closedByRelay(t, a, "A after B left")
		_ = a.Close()
		testutil.Eventually(t, "legs free again", func() bool {
			_, okA := s.Connected(SideA)
			_, okB := s.Connected(SideB)
			return !okA && !okB
		})
	}
	if st := s.Stats(); st.AToB.Dropped+st.BToA.Dropped != 0 {
		t.Fatalf("reconnections counted as refusals: %+v", st)
	}
}

// TestTCPStreamCloseReleases: Close resets both legs, closes the listeners
// (a new connection is refused by the kernel), ends every goroutine and
// hands the pairs back to the pool.
func TestTCPStreamCloseReleases(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newTestPool(t, 50*time.Millisecond)
	s := openTCPStream(t, p, TCPConfig{})
	s.SetPeer(SideA, TCPPeer{Addr: loopback})
	s.SetPeer(SideB, TCPPeer{Addr: loopback})
	a := dialFrom(t, "127.0.0.1", tcpAddr(s, SideA))
	b := dialFrom(t, "127.0.0.1", tcpAddr(s, SideB))
	refused(t, "127.0.0.1", tcpAddr(s, SideA), "second connection on A's port")
	if _, err := a.Write(bfcp(11, 1, 0)); err != nil {
		t.Fatal(err)
	}
	mustRead(t, b, bfcp(11, 1, 0))
	s.Close()
	s.Close()
	closedByRelay(t, a, "A after Close")
	closedByRelay(t, b, "B after Close")
	if c, err := net.DialTimeout("tcp", tcpAddr(s, SideA), time.Second); err == nil {
		_ = c.Close()
		t.Fatal("relay still listening after Close")
	}
	testutil.Eventually(t, "pairs free after draining", func() bool { return p.Stats().Free == p.Stats().Pairs })
}

// TestTCPStreamPortTaken: when another socket holds the TCP port of a pair,
// NewTCPStream fails with ErrPortUnavailable and leaves the pairs to the
// caller.
func TestTCPStreamPortTaken(t *testing.T) {
	p := newTestPool(t, 50*time.Millisecond)
	a, b := acquire(t, p), acquire(t, p)
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(local(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := NewTCPStream(a, b, TCPConfig{}); !errors.Is(err, ErrPortUnavailable) {
		t.Fatalf("err %v", err)
	}
	// A's listener was closed again: the port can be listened on.
	l2, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(local(a)))
	if err != nil {
		t.Fatalf("A's TCP port left bound: %v", err)
	}
	_ = l2.Close()
	a.ReleaseNow()
	b.ReleaseNow()
}

// TestTCPStreamSplicesTLS: TCP/TLS/BFCP. The relay does not terminate TLS:
// the two legs complete a TLS 1.3 handshake with each other through it (the
// client pins the server's self-signed certificate, as a=fingerprint does)
// and exchange BFCP inside; the relay counts the encrypted bytes.
func TestTCPStreamSplicesTLS(t *testing.T) {
	testutil.CheckGoroutines(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "floor-server"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	fingerprint := sha256.Sum256(der)

	p := newTestPool(t, 50*time.Millisecond)
	s := newTCPStream(t, p, TCPConfig{})
	s.SetPeer(SideA, TCPPeer{Addr: loopback})
	s.SetPeer(SideB, TCPPeer{Addr: loopback})
	server := tls.Server(dialFrom(t, "127.0.0.1", tcpAddr(s, SideB)), &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS13})
	client := tls.Client(dialFrom(t, "127.0.0.1", tcpAddr(s, SideA)), &tls.Config{
		InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, // verified by fingerprint below, as RFC 8122 does
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || sha256.Sum256(raw[0]) != fingerprint {
				return errors.New("fingerprint mismatch")
			}
			return nil
		}})
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatalf("client handshake through the relay: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake through the relay: %v", err)
	}
	hello, ack := bfcp(11, 1, 0), bfcp(12, 1, 10)
	if _, err := client.Write(hello); err != nil {
		t.Fatal(err)
	}
	mustRead(t, server, hello)
	if _, err := server.Write(ack); err != nil {
		t.Fatal(err)
	}
	mustRead(t, client, ack)
	st := s.Stats()
	if st.AToB.Bytes <= uint64(len(hello)) || st.BToA.Bytes <= uint64(len(ack)) {
		t.Fatalf("TLS bytes not counted: %+v", st)
	}
	_ = client.Close()
	_ = server.Close()
}
