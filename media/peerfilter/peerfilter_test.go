package peerfilter

import (
	"net/netip"
	"testing"
)

func TestEmbeddedIPv4(t *testing.T) {
	for _, tc := range []struct{ ip, want string }{
		{"::ffff:127.0.0.1", "127.0.0.1"},
		{"::127.0.0.1", "127.0.0.1"},
		{"64:ff9b::7f00:1", "127.0.0.1"},
		{"2002:7f00:1::", "127.0.0.1"},
		{"2002:c633:6407:1::5", "198.51.100.7"},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "192.0.2.45"}, // RFC 4380 example client
		{"10.1.2.3", "10.1.2.3"},
		{"2001:db8::1", ""},
	} {
		got, ok := EmbeddedIPv4(netip.MustParseAddr(tc.ip))
		if (tc.want == "") == ok || (ok && got != netip.MustParseAddr(tc.want)) {
			t.Errorf("EmbeddedIPv4(%s) = %v, %v; want %q", tc.ip, got, ok, tc.want)
		}
	}
}

func TestAllowListCoversEmbeddedForms(t *testing.T) {
	f := New([]netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}, nil)
	for _, ip := range []string{"10.20.1.1", "::ffff:10.20.1.1", "64:ff9b::a14:101", "2002:a14:101::"} {
		if !f.Allowed(netip.MustParseAddr(ip)) {
			t.Errorf("%s: allow-listed 10.20.0.0/16 refused", ip)
		}
	}
	if f.Allowed(netip.Addr{}) {
		t.Error("the zero address is allowed")
	}
}

// FuzzAllowed: any IPv6 address that carries a denied or own IPv4 address is refused, and
// nothing panics.
func FuzzAllowed(f *testing.F) {
	for _, s := range []string{"64:ff9b::7f00:1", "::127.0.0.1", "2002:7f00:1::", "::ffff:127.0.0.1", "2001::1", "fe80::1%eth0"} {
		a := netip.MustParseAddr(s).As16()
		f.Add(a[:])
	}
	own := netip.MustParseAddr("203.0.113.10")
	flt := New(nil, []netip.Addr{own})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) != 16 && len(b) != 4 {
			return
		}
		ip, _ := netip.AddrFromSlice(b)
		ok := flt.Allowed(ip)
		if v4, embeds := EmbeddedIPv4(ip); embeds && ok && (Denied(v4) || v4 == own) {
			t.Fatalf("%s carries %s and is allowed", ip, v4)
		}
		if ok && Denied(ip) {
			t.Fatalf("%s is denied yet allowed", ip)
		}
	})
}
