package turn

import (
	"encoding/binary"
	"net"

	"github.com/pion/stun/v2"
)

var noUser = ""

// allocateRequest is the STUN message type of an Allocate request.
const allocateRequest = 0x0003

// quotaConn wraps a TURN UDP listener socket. It looks at Allocate requests
// only (two header bytes decide that, so data traffic is not decoded):
// when the USERNAME is already at quota it answers 486 itself and pion never
// sees the request; otherwise it tells the listener's generator which user
// the allocation pion is about to create belongs to.
type quotaConn struct {
	net.PacketConn
	s   *Server
	gen *generator
}

func (c *quotaConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil {
			return n, addr, err
		}
		user := ""
		if n >= 20 && binary.BigEndian.Uint16(b[0:2]) == allocateRequest && stun.IsMessage(b[:n]) {
			m := &stun.Message{Raw: append([]byte(nil), b[:n]...)}
			if m.Decode() == nil {
				var u stun.Username
				if u.GetFrom(m) == nil && m.Contains(stun.AttrMessageIntegrity) {
					user = quotaUser(u.String())
					if c.s.atQuota(user) {
						c.s.refused.Add(1)
						c.reject(m, addr)
						continue
					}
				}
			}
		}
		if user == "" {
			c.gen.pending.Store(&noUser) // no allocation for data traffic
		} else {
			c.gen.pending.Store(&user)
		}
		return n, addr, nil
	}
}

func (c *quotaConn) reject(req *stun.Message, to net.Addr) {
	res, err := stun.Build(
		stun.NewTransactionIDSetter(req.TransactionID),
		stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse),
		stun.CodeAllocQuotaReached,
		stun.Fingerprint,
	)
	if err != nil {
		return
	}
	_, _ = c.PacketConn.WriteTo(res.Raw, to)
}
