// Package siphost answers the two questions every part of the signalling path asks of a SIP URI
// host: is it an IP literal, and does it name this node. The node's names and addresses are
// gathered once, at start (Set), and shared by the guard and the B2BUA.
package siphost

import (
	"net/netip"
	"strings"
)

// Trim removes IPv6 brackets and a trailing dot from a URI host.
func Trim(h string) string {
	if len(h) >= 2 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	return strings.TrimSuffix(h, ".")
}

// IP parses a URI host that is an IP literal (bracketed or not), unmapped. Domains are told
// apart without calling the parser (whose error allocates), so it does not allocate. A zone ID
// (RFC 6874, fe80::1%25eth0) is kept: it names an interface of the sender's host, so such an
// address is never one of ours.
func IP(h string) (netip.Addr, bool) {
	h = Trim(h)
	if h == "" {
		return netip.Addr{}, false
	}
	if strings.IndexByte(h, ':') < 0 {
		for i := 0; i < len(h); i++ {
			if c := h[i]; (c < '0' || c > '9') && c != '.' {
				return netip.Addr{}, false
			}
		}
	}
	a, err := netip.ParseAddr(h)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// IsIP reports whether a URI host is an IP literal.
func IsIP(h string) bool {
	_, ok := IP(h)
	return ok
}

// Set is what names this node: its domains (the SIP domain and its aliases) and its addresses.
// It is built once and read-only afterwards, so it is safe for concurrent use.
type Set struct {
	domains []string
	addrs   []netip.Addr
}

// NewSet returns the set of domains (empty ones are skipped) and addresses (unmapped, without
// zone, duplicates dropped).
func NewSet(domains []string, addrs []netip.Addr) *Set {
	s := &Set{}
	for _, d := range domains {
		if d = strings.TrimSuffix(d, "."); d != "" {
			s.domains = append(s.domains, d)
		}
	}
	for _, a := range addrs {
		if a = a.Unmap().WithZone(""); a.IsValid() && !s.IsAddr(a) {
			s.addrs = append(s.addrs, a)
		}
	}
	return s
}

// Ours reports whether a URI host names this node: one of its domains or of its addresses.
func (s *Set) Ours(h string) bool {
	if ip, ok := IP(h); ok {
		return s.IsAddr(ip)
	}
	return s.IsDomain(h)
}

// IsDomain reports whether a URI host is one of our domains (an IP never is).
func (s *Set) IsDomain(h string) bool {
	h = Trim(h)
	for _, d := range s.domains {
		if strings.EqualFold(h, d) {
			return true
		}
	}
	return false
}

// IsAddr reports whether a is one of our addresses (a must be unmapped).
func (s *Set) IsAddr(a netip.Addr) bool {
	for _, n := range s.addrs {
		if n == a {
			return true
		}
	}
	return false
}

// Addrs returns our addresses.
func (s *Set) Addrs() []netip.Addr { return append([]netip.Addr(nil), s.addrs...) }
