package edge

import (
	"net/netip"
	"testing"
	"time"
)

func TestBlocklist(t *testing.T) {
	now := time.Now()
	var b Blocklist
	if b.Blocked(netip.MustParseAddr("192.0.2.1")) {
		t.Fatal("empty list blocks")
	}
	b.Set([]netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, map[netip.Prefix]time.Time{
		netip.MustParsePrefix("203.0.113.7/32"):    now.Add(time.Hour),
		netip.MustParsePrefix("2001:db8:1:2::/64"): now.Add(time.Hour),
		netip.MustParsePrefix("192.0.2.9/32"):      now.Add(-time.Second), // expired
	}, now)
	tests := []struct {
		addr string
		want bool
	}{
		{"198.51.100.200", true}, {"203.0.113.7", true}, {"203.0.113.8", false},
		{"2001:db8:1:2::99", true}, {"2001:db8:1:3::1", false}, {"192.0.2.9", false},
	}
	for _, tt := range tests {
		if got := b.Blocked(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Blocked(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if b.Stale(now) || !b.Stale(now.Add(2*time.Hour)) {
		t.Fatal("staleness follows the earliest ban expiry")
	}
}

func BenchmarkBlockedSource(b *testing.B) {
	var bl Blocklist
	bans := map[netip.Prefix]time.Time{}
	for i := range 10_000 {
		bans[netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), 32)] = time.Now().Add(time.Hour)
	}
	bl.Set(nil, bans, time.Now())
	banned, clean := netip.MustParseAddr("10.0.5.1"), netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		if !bl.Blocked(banned) || bl.Blocked(clean) {
			b.Fatal("wrong answer")
		}
	}
}
