package sbc

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

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
type flowRequester struct {
	ua         *sipgo.UserAgent
	registered func(netip.AddrPort) bool // a room's binding names this source
}

// Request sends req in a new client transaction, or writes it when it is an ACK.
func (f flowRequester) Request(ctx context.Context, req *sip.Request) (sip.ClientTransaction, error) {
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
