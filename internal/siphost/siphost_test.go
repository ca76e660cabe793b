package siphost

import (
	"net/netip"
	"testing"
)

func TestSet(t *testing.T) {
	s := NewSet([]string{"example.com", "sip.example.com.", ""},
		[]netip.Addr{netip.MustParseAddr("::ffff:192.0.2.1"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.1")})
	tests := []struct {
		name, host string
		ours, ip   bool
	}{
		{name: "domain", host: "example.com", ours: true},
		{name: "domain any case, trailing dot", host: "EXAMPLE.com.", ours: true},
		{name: "alias", host: "sip.example.com", ours: true},
		{name: "other domain", host: "example.org"},
		{name: "empty", host: ""},
		{name: "our IPv4", host: "192.0.2.1", ours: true, ip: true},
		{name: "our IPv6 bracketed", host: "[2001:db8::1]", ours: true, ip: true},
		{name: "our IPv6 with a zone is not ours", host: "[2001:db8::1%25eth0]", ip: true},
		{name: "mapped IPv4", host: "[::ffff:192.0.2.1]", ours: true, ip: true},
		{name: "other IP", host: "198.51.100.1", ip: true},
		{name: "numeric domain is no IP", host: "1.2.3", ip: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.Ours(tt.host); got != tt.ours {
				t.Errorf("Ours(%q) = %v, want %v", tt.host, got, tt.ours)
			}
			if got := IsIP(tt.host); got != tt.ip {
				t.Errorf("IsIP(%q) = %v, want %v", tt.host, got, tt.ip)
			}
		})
	}
	if n := len(s.Addrs()); n != 2 {
		t.Errorf("Addrs has %d entries, want 2 (duplicates dropped)", n)
	}
}

func TestIPDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _, _ = IP("rooms.example.com") }); n != 0 {
		t.Errorf("IP allocates %v times for a domain", n)
	}
}
