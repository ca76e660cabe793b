package fastpath

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// openLo attaches the program to lo, or skips loudly when the kernel refuses
// (not root, no BPF). In CI (PORTCULLIS_CI set, run as root) a refusal fails.
func openLo(t *testing.T) *FastPath {
	t.Helper()
	f, err := Open([]string{"lo"})
	if err != nil {
		if os.Getenv("PORTCULLIS_CI") != "" {
			t.Fatalf("kernel fast path refused in CI (runs as root): %v", err)
		}
		t.Skipf("SKIPPED LOUDLY: kernel fast path not available here (uid %d): %v", os.Getuid(), err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func udpOn(t *testing.T, ip string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ap(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

func rtp(seq uint16, size int) []byte {
	b := make([]byte, size)
	b[0], b[1] = 0x80, 0 // V=2, PCMU
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[8:], 0x11223344)
	for i := 12; i < size; i++ {
		b[i] = byte(seq) ^ byte(i)
	}
	return b
}

// recvFrom reads one datagram with a generous deadline.
func recvFrom(t *testing.T, c *net.UDPConn) ([]byte, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, src, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("read on %s: %v", ap(c), err)
	}
	return buf[:n], netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
}

func send(t *testing.T, c *net.UDPConn, to netip.AddrPort, b []byte) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(b, to); err != nil {
		t.Fatal(err)
	}
}

// TestKernelForwardsLatchedRTP: two peers on loopback talk through a relay
// whose sockets never read; only the kernel can carry the media. A third
// source is never forwarded, and after Remove (a BYE) nothing is.
func TestKernelForwardsLatchedRTP(t *testing.T) {
	f := openLo(t)
	peerA, peerB, stranger := udpOn(t, "127.0.0.2"), udpOn(t, "127.0.0.3"), udpOn(t, "127.0.0.4")
	sameIP := udpOn(t, "127.0.0.2") // the latched peer's IP, another port
	relayA, relayB := udpOn(t, "127.0.0.1"), udpOn(t, "127.0.0.1")
	aToB := Entry{Match: Match{Src: ap(peerA), Relay: ap(relayA)}, Via: ap(relayB), Dst: ap(peerB), PayloadTypes: []uint8{0, 8}}
	bToA := Entry{Match: Match{Src: ap(peerB), Relay: netip.AddrPortFrom(netip.IPv4Unspecified(), ap(relayB).Port())}, Via: ap(relayA), Dst: ap(peerA)}
	for _, e := range []Entry{aToB, bToA} {
		if err := f.Install(e); err != nil {
			t.Fatal(err)
		}
	}
	const n, size = 50, 172 // 20 ms of PCMU
	for i := range n {
		p := rtp(uint16(i), size)
		send(t, peerA, ap(relayA), p)
		got, src := recvFrom(t, peerB)
		if src != ap(relayB) || !bytes.Equal(got, p) {
			t.Fatalf("A->B packet %d: got %d bytes from %s, want %d from %s", i, len(got), src, len(p), ap(relayB))
		}
		send(t, peerB, ap(relayB), p)
		got, src = recvFrom(t, peerA)
		if src != ap(relayA) || !bytes.Equal(got, p) {
			t.Fatalf("B->A packet %d: got %d bytes from %s, want from %s", i, len(got), src, ap(relayA))
		}
	}
	// Strangers (another IP, the peer's IP on another port) and a payload type
	// not offered reach the relay socket in userspace, never the peer.
	for i, c := range []*net.UDPConn{stranger, sameIP, peerA} {
		p := rtp(uint16(1000+i), size)
		if c == peerA {
			p[1] = 96
		}
		send(t, c, ap(relayA), p)
		got, src := recvFrom(t, relayA)
		if src != ap(c) || !bytes.Equal(got, p) {
			t.Fatalf("case %d: relay socket got %d bytes from %s, want the packet from %s", i, len(got), src, ap(c))
		}
	}
	// RTCP from the peer (rtcp-mux) goes to userspace too.
	rtcp := []byte{0x80, 200, 0, 6, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	send(t, peerA, ap(relayA), rtcp)
	if got, src := recvFrom(t, relayA); src != ap(peerA) || !bytes.Equal(got, rtcp) {
		t.Fatalf("RTCP: relay got %x from %s", got, src)
	}
	// The next thing B sees is A's media, not any of the above.
	sentinel := rtp(2000, size)
	send(t, peerA, ap(relayA), sentinel)
	if got, _ := recvFrom(t, peerB); !bytes.Equal(got, sentinel) {
		t.Fatalf("B received something else before A's next packet: %x", got[:12])
	}
	c, err := f.Counters(aToB.Match)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Counters{Packets: n + 1, Bytes: (n + 1) * size}); c != want {
		t.Fatalf("A->B counters %+v, want %+v", c, want)
	}
	if c, _ := f.Counters(bToA.Match); c != (Counters{Packets: n, Bytes: n * size}) {
		t.Fatalf("B->A counters %+v, want %d packets", c, n)
	}

	// BYE: entries removed, media from the peer now reaches the relay socket.
	final, err := f.Remove(aToB.Match)
	if err != nil || final.Packets != n+1 {
		t.Fatalf("Remove: %+v, %v", final, err)
	}
	if _, err := f.Remove(bToA.Match); err != nil {
		t.Fatal(err)
	}
	if got := f.Entries(); got != 0 {
		t.Fatalf("%d entries left after removal", got)
	}
	after := rtp(3000, size)
	send(t, peerA, ap(relayA), after)
	if got, src := recvFrom(t, relayA); src != ap(peerA) || !bytes.Equal(got, after) {
		t.Fatalf("after removal the relay socket got %d bytes from %s", len(got), src)
	}
	// And B got nothing more: a sentinel B sends itself arrives first.
	self := rtp(4000, size)
	send(t, peerB, ap(peerB), self)
	if got, _ := recvFrom(t, peerB); !bytes.Equal(got, self) {
		t.Fatalf("B received media after removal")
	}
}

func TestInstallRejectsBadEntries(t *testing.T) {
	f := openLo(t)
	good := netip.MustParseAddrPort("127.0.0.2:4000")
	relay := netip.MustParseAddrPort("127.0.0.1:5000")
	for name, e := range map[string]Entry{
		"ipv6 source":   {Match: Match{Src: netip.MustParseAddrPort("[::1]:4000"), Relay: relay}, Via: relay, Dst: good},
		"zero port":     {Match: Match{Src: netip.MustParseAddrPort("127.0.0.2:0"), Relay: relay}, Via: relay, Dst: good},
		"no dst":        {Match: Match{Src: good, Relay: relay}, Via: relay},
		"unspec source": {Match: Match{Src: netip.MustParseAddrPort("0.0.0.0:4000"), Relay: relay}, Via: relay, Dst: good},
	} {
		if err := f.Install(e); !errors.Is(err, ErrAddress) {
			t.Errorf("%s: Install = %v, want ErrAddress", name, err)
		}
	}
	if f.Entries() != 0 {
		t.Fatal("a bad entry was installed")
	}
}

// TestOpenRefusedWithoutPrivilege runs Open in a child process as nobody (no
// CAP_BPF, no CAP_NET_ADMIN): it must return an error, not crash or attach.
func TestOpenRefusedWithoutPrivilege(t *testing.T) {
	if os.Getenv("FASTPATH_CHILD") == "1" {
		f, err := Open([]string{"lo"})
		if err == nil {
			_ = f.Close()
			os.Exit(3)
		}
		os.Stdout.WriteString("REFUSED: " + err.Error() + "\n")
		os.Exit(0)
	}
	if os.Getuid() != 0 {
		t.Skip("SKIPPED LOUDLY: needs root to start a child without privileges")
	}
	dir, err := os.MkdirTemp("", "fastpath-child")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	exe, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "child.test")
	if err := os.WriteFile(bin, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestOpenRefusedWithoutPrivilege$")
	cmd.Env = append(os.Environ(), "FASTPATH_CHILD=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("REFUSED: ")) {
		t.Fatalf("child did not report a refusal:\n%s", out)
	}
	t.Logf("%s", bytes.TrimSpace(out))
}

// TestKernelLeavesAggregatesToUserspace: a UDP GSO send (one skb of several equal-sized
// datagrams, which is how a QUIC stack or our own load tool sends a video frame, and what UDP
// GRO builds on receive) reaches the program as one packet. The program checks one RTP header
// and counts one packet per skb, so it must not forward an aggregate: the relay socket gets
// every datagram in userspace, which checks and counts each, and the counters stay exact.
// A single datagram from the same socket has its payload in page fragments (UDP_SEGMENT set
// makes the stack build paged skbs), not in the linear part the program reads directly: the
// program pulls the headers in and forwards it (before, it left every such packet to userspace).
func TestKernelLeavesAggregatesToUserspace(t *testing.T) {
	f := openLo(t)
	peerA, peerB := udpOn(t, "127.0.0.2"), udpOn(t, "127.0.0.3")
	relayA, relayB := udpOn(t, "127.0.0.1"), udpOn(t, "127.0.0.1")
	aToB := Entry{Match: Match{Src: ap(peerA), Relay: ap(relayA)}, Via: ap(relayB), Dst: ap(peerB), PayloadTypes: []uint8{0}}
	if err := f.Install(aToB); err != nil {
		t.Fatal(err)
	}
	const segs, size = 4, 1200
	var frame []byte
	for i := range segs {
		frame = append(frame, rtp(uint16(i), size)...)
	}
	rc, err := peerA.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_UDP, 103 /* UDP_SEGMENT */, size)
	}); err != nil || serr != nil {
		t.Skipf("SKIPPED LOUDLY: UDP GSO not available: %v %v", err, serr)
	}
	send(t, peerA, ap(relayA), frame)
	for i := range segs {
		got, src := recvFrom(t, relayA)
		if src != ap(peerA) || !bytes.Equal(got, frame[i*size:(i+1)*size]) {
			t.Fatalf("datagram %d of the aggregate: relay socket got %d bytes from %s", i, len(got), src)
		}
	}
	if c := mustCounters(t, f, aToB.Match); c != (Counters{}) {
		t.Fatalf("the kernel counted the aggregate: %+v", c)
	}
	// A single datagram from the same peer still takes the kernel path.
	one := rtp(100, 172)
	send(t, peerA, ap(relayA), one)
	if got, _ := recvFrom(t, peerB); !bytes.Equal(got, one) {
		t.Fatalf("B received %d bytes, want the single datagram", len(got))
	}
	if c := mustCounters(t, f, aToB.Match); c != (Counters{Packets: 1, Bytes: 172}) {
		t.Fatalf("counters %+v after one datagram", c)
	}
}

func mustCounters(t *testing.T, f *FastPath, m Match) Counters {
	t.Helper()
	c, err := f.Counters(m)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
