package relay

import (
	"net/netip"

	"github.com/portcullis-sbc/portcullis/media/peerfilter"
)

// PeerFilter decides which peer IPs media may be relayed to and latched from. It is
// [peerfilter.Filter], the one deny list the RTP relay and TURN share (internal ranges, the
// IPv6 forms that carry such an IPv4 address, the node's own addresses). A nil *PeerFilter
// allows every address.
type PeerFilter = peerfilter.Filter

// NewPeerFilter denies the built-in internal ranges and own (the node's addresses), except
// what allow lists.
func NewPeerFilter(allow []netip.Prefix, own []netip.Addr) *PeerFilter {
	return peerfilter.New(allow, own)
}

// InterfaceAddrs returns the host's interface addresses (the node's own).
func InterfaceAddrs() []netip.Addr { return peerfilter.InterfaceAddrs() }
