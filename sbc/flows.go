package sbc

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// ErrFlowGone is the error for a request to a room's TCP/TLS flow whose connection has closed:
// the room is behind NAT or has no listener, so dialling its source port back would only time
// out (RFC 5626 section 5.3: a request for a flow that failed is not sent).
var ErrFlowGone = errors.New("registered flow closed")

// flowRequester sends the node client's requests (sipgo.Client.TxRequester) so that a request
// over TCP or TLS takes the connection its destination already has.
//
// The node's client is pinned to its UDP listener (WithClientConnectionAddr: UDP requests must
// leave from the SIP port). sipgo copies that local address onto every request, and for TCP/TLS
// it then looks the connection up by the local address and, finding none, dials a new one from
// it: a call to a room registered over TCP or TLS never took the room's flow (the dial to its
// ephemeral port is refused, or lost behind NAT). The local address is dropped here for
// reliable transports, so sipgo takes the pooled connection of the destination (the flow the
// room registered on, sipgo issue 361 for in-dialog requests). A destination that is a
// registered flow with no connection any more is refused with ErrFlowGone instead of dialled.
//
// It also sends a request to a peer of the other address family (an IPv6 room of a node whose
// first listener is IPv4, or the reverse) from the node's listener of that family, with that
// listener in Via and in our Contact: the peer's answers and in-dialog requests come back to
// an address it can reach.
type flowRequester struct {
	ua         *sipgo.UserAgent
	registered func(netip.AddrPort) bool // a room's binding names this source
	// listener is the node's first listener of transport (udp, tcp, tls) in the family of
	// v6 and its advertised host; first is the first listener of transport of any family.
	listener func(transport string, v6 bool) (b Bound, host string, ok bool)
	first    func(transport string) (b Bound, host string, ok bool)
}

// Request sends req in a new client transaction, or writes it when it is an ACK.
func (f flowRequester) Request(ctx context.Context, req *sip.Request) (sip.ClientTransaction, error) {
	f.family(req)
	if sip.IsReliable(req.Transport()) {
		req.Laddr = sip.Addr{}
		if err := f.checkFlow(req); err != nil {
			return nil, err
		}
	}
	if req.IsAck() {
		return nil, f.ua.TransportLayer().WriteMsg(req)
	}
	tx, err := f.ua.TransactionLayer().Request(ctx, req)
	if err != nil {
		return nil, err
	}
	return tx, nil
}

func (f flowRequester) checkFlow(req *sip.Request) error {
	dst, err := netip.ParseAddrPort(req.Destination())
	if err != nil || f.registered == nil || !f.registered(dst) {
		return nil // not a room's flow (a trunk or a name): sipgo dials as usual
	}
	if _, err := f.ua.TransportLayer().GetConnection(req.Transport(), dst.String()); err != nil {
		return fmt.Errorf("%w: %s %s", ErrFlowGone, req.Transport(), dst)
	}
	return nil
}

// family points req's Via, Contact and (UDP) local address at the node's listener of the
// destination's address family when the default one (the first listener) is of the other.
func (f flowRequester) family(req *sip.Request) {
	if f.listener == nil || f.first == nil {
		return
	}
	dst, err := netip.ParseAddrPort(req.Destination())
	if err != nil {
		return
	}
	tr := strings.ToLower(req.Transport())
	v6 := dst.Addr().Is6() && !dst.Addr().Is4In6()
	def, defHost, ok := f.first(tr)
	if !ok || (def.Addr.Addr().Is6() && !def.Addr.Addr().Is4In6()) == v6 {
		return
	}
	b, host, ok := f.listener(tr, v6)
	if !ok {
		return // no listener of that family: sipgo's choice stands
	}
	port := int(b.Addr.Port())
	if via := req.Via(); via != nil && via.Host == defHost {
		via.Host, via.Port = host, port
	}
	if ct := req.Contact(); ct != nil && ct.Address.Host == defHost && ct.Address.Port == int(def.Addr.Port()) {
		ct.Address.Host, ct.Address.Port = host, port
	}
	if tr == "udp" {
		req.Laddr = sip.Addr{IP: b.Addr.Addr().AsSlice(), Port: port}
	}
}
