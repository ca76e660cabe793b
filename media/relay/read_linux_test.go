//go:build linux && (amd64 || arm64)

package relay

import (
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestDatagramSourceAddresses: the fast reader decodes IPv4, IPv4-mapped (unmapped, so they
// match SDP) and IPv6 sources; a link-local IPv6 source keeps its interface as a numeric zone
// (a reply without it cannot be routed), any other IPv6 source has no zone.
func TestDatagramSourceAddresses(t *testing.T) {
	r := newBatchReader()
	set4 := func(ip [4]byte, port uint16) {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&r.names[0]))
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip, Port: htons(port)}
	}
	set6 := func(ip string, port uint16, scope uint32) {
		r.names[0] = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: netip.MustParseAddr(ip).As16(), Port: htons(port), Scope_id: scope}
	}
	for _, tc := range []struct {
		set  func()
		want string
	}{
		{func() { set4([4]byte{192, 0, 2, 7}, 40000) }, "192.0.2.7:40000"},
		{func() { set6("::ffff:192.0.2.7", 40002, 0) }, "192.0.2.7:40002"},
		{func() { set6("2001:db8::5", 5004, 0) }, "[2001:db8::5]:5004"},
		{func() { set6("2001:db8::5", 5004, 3) }, "[2001:db8::5]:5004"},
		{func() { set6("fe80::1", 5006, 3) }, "[fe80::1%3]:5006"},
		{func() { set6("fe80::1", 5006, 1000) }, "[fe80::1%1000]:5006"},
	} {
		tc.set()
		r.msgs[0].n = 12
		b, src, ok := r.datagram(0)
		if !ok || len(b) != 12 || src.String() != tc.want {
			t.Errorf("datagram: %d bytes from %s (%v), want 12 from %s", len(b), src, ok, tc.want)
		}
	}
	// the zone string of a small index is made once
	set6("fe80::1", 5006, 3)
	if n := testing.AllocsPerRun(100, func() { r.datagram(0) }); n != 0 {
		t.Errorf("a link-local source allocates %.1f per datagram", n)
	}
	r.names[0].Family = unix.AF_UNIX
	if _, _, ok := r.datagram(0); ok {
		t.Error("a datagram with a non-IP source was accepted")
	}
}

func htons(p uint16) uint16 { return ntohs(p) }
