package testutil

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"testing"
)

// Port windows for tests that need a fixed range of ports (a relay pool, a media manager).
//
// A range picked anywhere at random collides on a busy machine: it overlaps the kernel's
// ephemeral ports, which every outgoing TCP connection and every socket bound to port 0 (in
// this process or any other) takes from, so a TCP listener or a UDP bind on a "random" port
// fails now and then. PortWindow picks outside the ephemeral range and checks that the whole
// window is free for UDP and TCP before handing it out. Nothing can reserve it (another process
// may still bind one of its ports explicitly), so callers keep handling a taken port as the
// product does; but no longer every time an ephemeral port happens to fall in the window.

// fallbackEphemeral is Linux's default ephemeral range, when /proc cannot be read.
var fallbackEphemeral = [2]int{32768, 60999}

// EphemeralPorts returns the kernel's ephemeral port range (ip_local_port_range).
func EphemeralPorts() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if _, err = fmt.Sscan(string(b), &lo, &hi); err == nil && lo > 0 && hi >= lo && hi <= 65535 {
			return lo, hi
		}
	}
	return fallbackEphemeral[0], fallbackEphemeral[1]
}

// portWindowMin is the lowest port PortWindow hands out (well above the well-known and
// registered service ports that a test machine may run).
const portWindowMin = 20000

// PortWindow returns the first port (even) of n consecutive ports on ip that lie outside the
// kernel's ephemeral range and that were all free for UDP and TCP when it looked.
func PortWindow(t testing.TB, ip netip.Addr, n int) int {
	t.Helper()
	lo, hi := EphemeralPorts()
	var starts []int // candidate even first ports below and above the ephemeral range
	for p := portWindowMin; p+n-1 < lo; p += 2 {
		starts = append(starts, p)
	}
	for p := hi + 1 + (hi+1)%2; p+n-1 <= 65535; p += 2 {
		starts = append(starts, p)
	}
	if len(starts) == 0 {
		t.Fatalf("no window of %d ports outside the ephemeral range %d-%d", n, lo, hi)
	}
	for range 200 {
		base := starts[rand.IntN(len(starts))]
		if windowFree(ip, base, n) {
			return base
		}
	}
	t.Fatalf("no free window of %d ports on %s outside the ephemeral range %d-%d", n, ip, lo, hi)
	return 0
}

// windowFree binds every port of the window for UDP and TCP on ip, then closes them again.
func windowFree(ip netip.Addr, base, n int) bool {
	var open []interface{ Close() error }
	defer func() {
		for _, c := range open {
			_ = c.Close()
		}
	}()
	for port := base; port < base+n; port++ {
		ap := netip.AddrPortFrom(ip, uint16(port))
		u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return false
		}
		open = append(open, u)
		l, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
		if err != nil {
			return false
		}
		open = append(open, l)
	}
	return true
}
