package fastpath

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// ipCmd runs ip(8) with args, failing the test on error.
func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// udpInNetns opens a UDP socket on addr inside the named network namespace.
func udpInNetns(t *testing.T, ns, addr string) *net.UDPConn {
	t.Helper()
	type res struct {
		c   *net.UDPConn
		err error
	}
	ch := make(chan res)
	go func() {
		runtime.LockOSThread() // the thread is left to die: it never returns to the root namespace
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- res{err: err}
			return
		}
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		ch <- res{c, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("socket in %s: %v", ns, r.err)
	}
	t.Cleanup(func() { _ = r.c.Close() })
	return r.c
}

// TestKernelForwardsBetweenHosts: peers in two other network namespaces (other
// hosts, each behind its own veth link) talk through relay sockets in this
// one. The kernel path rewrites, looks the route up and sends the packet out of
// the other link (bpf_redirect_neigh), resolving the peer's MAC address.
func TestKernelForwardsBetweenHosts(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("PORTCULLIS_CI") != "" {
			t.Fatal("CI runs as root: network namespaces needed")
		}
		t.Skip("SKIPPED LOUDLY: needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("SKIPPED LOUDLY: ip(8) (iproute2) not installed")
	}
	id := fmt.Sprintf("%04x", rand.IntN(0x10000))
	net3 := 100 + rand.IntN(150)
	nsA, nsB, vA, vB := "fpa"+id, "fpb"+id, "fpa"+id, "fpb"+id
	subnet := func(leg, host int) string { return fmt.Sprintf("10.%d.%d.%d", net3, leg, host) }
	for i, ns := range []string{nsA, nsB} {
		v := []string{vA, vB}[i]
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		ipCmd(t, "link", "add", v, "type", "veth", "peer", "name", "eth0", "netns", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "link", "del", v).Run() })
		ipCmd(t, "addr", "add", subnet(i+1, 1)+"/24", "dev", v)
		ipCmd(t, "link", "set", v, "up")
		ipCmd(t, "-n", ns, "addr", "add", subnet(i+1, 2)+"/24", "dev", "eth0")
		ipCmd(t, "-n", ns, "link", "set", "eth0", "up")
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
		ipCmd(t, "-n", ns, "route", "add", "default", "via", subnet(i+1, 1))
	}
	f, err := Open([]string{vA, vB})
	if err != nil {
		if os.Getenv("PORTCULLIS_CI") != "" {
			t.Fatalf("kernel fast path refused in CI: %v", err)
		}
		t.Skipf("SKIPPED LOUDLY: kernel fast path not available: %v", err)
	}
	t.Cleanup(func() { _ = f.Close() })
	peerA := udpInNetns(t, nsA, subnet(1, 2)+":0")
	peerB := udpInNetns(t, nsB, subnet(2, 2)+":0")
	relayA, relayB := udpOn(t, subnet(1, 1)), udpOn(t, subnet(2, 1))
	aToB := Entry{Match: Match{Src: ap(peerA), Relay: ap(relayA)}, Via: ap(relayB), Dst: ap(peerB)}
	// B->A as for sockets on the wildcard address: any local address, and the
	// source the stack picks toward A (relayA's).
	any := func(c *net.UDPConn) netip.AddrPort { return netip.AddrPortFrom(netip.IPv4Unspecified(), ap(c).Port()) }
	bToA := Entry{Match: Match{Src: ap(peerB), Relay: any(relayB)}, Via: any(relayA), Dst: ap(peerA)}
	for _, e := range []Entry{aToB, bToA} {
		if err := f.Install(e); err != nil {
			t.Fatal(err)
		}
	}
	const n, size = 50, 172
	for i := range n {
		p := rtp(uint16(i), size)
		send(t, peerA, ap(relayA), p)
		got, src := recvFrom(t, peerB)
		if src != ap(relayB) || !bytes.Equal(got, p) {
			t.Fatalf("A->B packet %d: got %d bytes from %s, want from %s", i, len(got), src, ap(relayB))
		}
		send(t, peerB, ap(relayB), p)
		got, src = recvFrom(t, peerA)
		if src != ap(relayA) || !bytes.Equal(got, p) {
			t.Fatalf("B->A packet %d: got %d bytes from %s, want from %s", i, len(got), src, ap(relayA))
		}
	}
	if c, _ := f.Counters(aToB.Match); c != (Counters{Packets: n, Bytes: n * size}) {
		t.Fatalf("A->B counters %+v, want %d packets", c, n)
	}
	// After removal the relay socket gets A's media.
	if _, err := f.Remove(aToB.Match); err != nil {
		t.Fatal(err)
	}
	p := rtp(999, size)
	send(t, peerA, ap(relayA), p)
	if got, src := recvFrom(t, relayA); src != ap(peerA) || !bytes.Equal(got, p) {
		t.Fatalf("after removal the relay socket got %d bytes from %s", len(got), src)
	}
}
