package turn

import (
	"net"
	"net/netip"

	"github.com/portcullis-sbc/portcullis/media/relay"
)

// PeerFilter decides which peer IPs a TURN allocation may relay to. It is the RTP relay's
// filter: the relay and TURN share one deny list (internal ranges and the node's addresses).
type PeerFilter = relay.PeerFilter

// NewPeerFilter denies the built-in internal ranges and own (the node's addresses), except
// what allow lists.
func NewPeerFilter(allow []netip.Prefix, own []netip.Addr) *PeerFilter {
	return relay.NewPeerFilter(allow, own)
}

// permission adapts the filter to pion's PermissionHandler.
func permission(f *PeerFilter, onDeny func(net.Addr, netip.Addr)) func(net.Addr, net.IP) bool {
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
func interfaceAddrs() []netip.Addr { return relay.InterfaceAddrs() }
