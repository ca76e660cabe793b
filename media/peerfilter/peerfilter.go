// Package peerfilter decides which addresses media may be sent to on behalf of a remote party:
// the TURN server's peers (media/turn) and, shared with it, the relay's media destinations.
// It denies internal destinations (loopback, RFC 1918, CGNAT, link-local and cloud metadata,
// multicast, ULA, ...) and the node's own addresses, unless allow-listed, and judges the IPv6
// forms that carry an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64 64:ff9b::/96, 6to4
// 2002::/16, Teredo 2001::/32) by the IPv4 address inside: a NAT64 gateway or 6to4 relay would
// otherwise carry a packet for 64:ff9b::7f00:1 to 127.0.0.1.
//
//	func Denied(ip netip.Addr) bool                        // the built-in list alone
//	func EmbeddedIPv4(ip netip.Addr) (netip.Addr, bool)    // the IPv4 address an IPv6 one carries
//	func New(allow []netip.Prefix, own []netip.Addr) *Filter
//	func (f *Filter) Allowed(ip netip.Addr) bool           // allow list, own addresses, Denied
//
// Nothing here allocates per call.
package peerfilter

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// denied are never relayed to unless allow-listed: the SSRF targets of a TURN server
// (pion/turn#134) and of a media relay.
var denied = []netip.Prefix{
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
	netip.MustParsePrefix("100::/64"),       // discard-only
	netip.MustParsePrefix("fc00::/7"),       // ULA
	netip.MustParsePrefix("fe80::/10"),      // link-local
	netip.MustParsePrefix("fec0::/10"),      // site-local (deprecated, still routed inside some sites)
	netip.MustParsePrefix("ff00::/8"),       // multicast
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64 (RFC 8215): the site's own translator
}

// IPv6 prefixes whose addresses carry an IPv4 address.
var (
	nat64  = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052 well-known prefix
	compat = netip.MustParsePrefix("::/96")        // IPv4-compatible (deprecated, RFC 4291)
	sixTo4 = netip.MustParsePrefix("2002::/16")    // 6to4 (RFC 3056): 2002:AABB:CCDD::/48
	teredo = netip.MustParsePrefix("2001::/32")    // Teredo (RFC 4380): server and ^client
)

// EmbeddedIPv4 returns the IPv4 address that an IPv6 address carries: IPv4-mapped
// (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d) and 6to4
// (2002:aabb:ccdd::). A Teredo address carries two (see teredoIPv4s); this returns its client.
// An IPv4 address is returned as is.
func EmbeddedIPv4(ip netip.Addr) (netip.Addr, bool) {
	if ip.Is4() {
		return ip, true
	}
	if !ip.Is6() {
		return netip.Addr{}, false
	}
	ip = ip.WithZone("")
	b := ip.As16()
	switch {
	case ip.Is4In6():
		return ip.Unmap(), true
	case nat64.Contains(ip), compat.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixTo4.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	case teredo.Contains(ip):
		_, client := teredoIPv4s(b)
		return client, true
	}
	return netip.Addr{}, false
}

// teredoIPv4s returns the server and the (de-obfuscated) client IPv4 address of a Teredo address.
func teredoIPv4s(b [16]byte) (server, client netip.Addr) {
	server = netip.AddrFrom4([4]byte(b[4:8]))
	var c [4]byte
	binary.BigEndian.PutUint32(c[:], ^binary.BigEndian.Uint32(b[12:16]))
	return server, netip.AddrFrom4(c)
}

// Denied reports whether ip is in the built-in deny list, directly or through the IPv4 address
// it carries. An invalid address is denied.
func Denied(ip netip.Addr) bool {
	if !ip.IsValid() {
		return true
	}
	ip = ip.WithZone("")
	if deniedDirect(ip) {
		return true
	}
	if v4, ok := EmbeddedIPv4(ip); ok && v4 != ip && deniedDirect(v4) {
		return true
	}
	if ip.Is6() && teredo.Contains(ip) {
		if server, _ := teredoIPv4s(ip.As16()); deniedDirect(server) {
			return true
		}
	}
	return false
}

func deniedDirect(ip netip.Addr) bool {
	for _, p := range denied {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Filter decides which addresses may be peers (destinations) of relayed media. A nil *Filter
// allows every address. Allowed does not allocate.
type Filter struct {
	allow []netip.Prefix
	own   map[netip.Addr]bool
}

// New denies the built-in internal ranges (Denied) and own (the node's addresses), except what
// allow lists. IPv4-mapped own addresses are unmapped.
func New(allow []netip.Prefix, own []netip.Addr) *Filter {
	f := &Filter{allow: allow, own: map[netip.Addr]bool{}}
	for _, a := range own {
		if a.IsValid() {
			f.own[a.Unmap().WithZone("")] = true
		}
	}
	return f
}

// Allowed reports whether ip may be a peer. An allow-listed address (or the IPv4 address it
// carries) is allowed; otherwise the node's own addresses and the built-in list are denied,
// directly or through the IPv4 address ip carries.
func (f *Filter) Allowed(ip netip.Addr) bool {
	if f == nil {
		return true
	}
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap().WithZone("")
	v4, embeds := EmbeddedIPv4(ip)
	for _, p := range f.allow {
		if p.Contains(ip) || (embeds && p.Contains(v4)) {
			return true
		}
	}
	if f.own[ip] || (embeds && f.own[v4]) {
		return false
	}
	if ip.Is6() && teredo.Contains(ip) {
		if server, _ := teredoIPv4s(ip.As16()); f.own[server] {
			return false
		}
	}
	return !Denied(ip)
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
