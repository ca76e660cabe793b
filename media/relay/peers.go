package relay

import (
	"net"
	"net/netip"
)

// deniedPeers are the networks media is never sent to unless allow-listed: the SSRF targets
// of a relay that an SDP body or a TURN permission could point at (pion/turn#134). The RTP
// relay and the TURN server share this one list.
var deniedPeers = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network", unspecified
	netip.MustParsePrefix("10.0.0.0/8"),     // RFC 1918
	netip.MustParsePrefix("100.64.0.0/10"),  // CGNAT
	netip.MustParsePrefix("127.0.0.0/8"),    // loopback
	netip.MustParsePrefix("169.254.0.0/16"), // link-local, incl. 169.254.169.254 metadata
	netip.MustParsePrefix("172.16.0.0/12"),  // RFC 1918
	netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments
	netip.MustParsePrefix("192.168.0.0/16"), // RFC 1918
	netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking
	netip.MustParsePrefix("224.0.0.0/4"),    // multicast
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, broadcast
	netip.MustParsePrefix("::/128"),         // unspecified
	netip.MustParsePrefix("::1/128"),        // loopback
	netip.MustParsePrefix("fc00::/7"),       // ULA
	netip.MustParsePrefix("fe80::/10"),      // link-local
	netip.MustParsePrefix("ff00::/8"),       // multicast
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64
}

// DeniedPeers returns a copy of the built-in deny list.
func DeniedPeers() []netip.Prefix { return append([]netip.Prefix(nil), deniedPeers...) }

// PeerFilter decides which peer IPs media may be relayed to (and, for the RTP relay, latched
// from). A nil *PeerFilter allows every address.
type PeerFilter struct {
	allow []netip.Prefix
	own   map[netip.Addr]bool
}

// NewPeerFilter denies the built-in internal ranges and own (the node's addresses), except
// what allow lists.
func NewPeerFilter(allow []netip.Prefix, own []netip.Addr) *PeerFilter {
	f := &PeerFilter{allow: allow, own: map[netip.Addr]bool{}}
	for _, a := range own {
		if a.IsValid() {
			f.own[a.Unmap().WithZone("")] = true
		}
	}
	return f
}

// Allowed reports whether ip may be a relay peer. It does not allocate.
func (f *PeerFilter) Allowed(ip netip.Addr) bool {
	if f == nil {
		return true
	}
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() {
		return false
	}
	for _, p := range f.allow {
		if p.Contains(ip) {
			return true
		}
	}
	if f.own[ip] {
		return false
	}
	for _, p := range deniedPeers {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// InterfaceAddrs returns the host's interface addresses (the node's own).
func InterfaceAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr())
		}
	}
	return out
}
