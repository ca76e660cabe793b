package turn

import (
	"net"
	"net/netip"

	"github.com/portcullis-sbc/portcullis/media/peerfilter"
)

// PeerFilter decides which peer IPs a TURN allocation may relay to. It is
// [peerfilter.Filter], the definition shared with the media relay's destinations.
type PeerFilter = peerfilter.Filter

// NewPeerFilter denies the built-in internal ranges (see [peerfilter.Denied], which judges
// IPv4-embedding IPv6 forms by the IPv4 address inside) and own (the node's addresses),
// except what allow lists.
func NewPeerFilter(allow []netip.Prefix, own []netip.Addr) *PeerFilter {
	return peerfilter.New(allow, own)
}

// permissionHandler adapts the filter to pion's PermissionHandler.
func permissionHandler(f *PeerFilter, onDeny func(net.Addr, netip.Addr)) func(net.Addr, net.IP) bool {
	return func(client net.Addr, peer net.IP) bool {
		ip, ok := netip.AddrFromSlice(peer)
		if ok && f.Allowed(ip) {
			return true
		}
		onDeny(client, ip)
		return false
	}
}

// interfaceAddrs returns the host's interface addresses (the node's own).
func interfaceAddrs() []netip.Addr { return peerfilter.InterfaceAddrs() }
