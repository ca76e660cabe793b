package turn

import (
	"errors"
	"net"
	"net/netip"

	"github.com/pion/stun/v2"
	pturn "github.com/pion/turn/v3"
)

// Gate is the node's brute-force guard as the TURN server sees it (the node adapts
// sbc/guard). pion/turn's AuthHandler only hands pion a key: pion checks MESSAGE-INTEGRITY
// itself afterwards and a wrong password never comes back to us, so the listeners' sockets
// are wrapped and check it first (see inspector).
type Gate interface {
	// Banned reports whether src is banned: all it sends is dropped before pion reads it.
	Banned(src netip.AddrPort) bool
	// AuthFailed counts a failed TURN authentication of user from src (wrong key, unknown
	// user, invalid or expired REST credential) toward the same brute-force ban as SIP digest.
	AuthFailed(src netip.AddrPort, user, transport string)
	// AuthSucceeded clears src's failed logins.
	AuthSucceeded(src netip.AddrPort, user string)
}

// Transport names the gate reports (events show them).
const (
	TransportUDP = "TURN"
	TransportTCP = "TURN-TCP"
	TransportTLS = "TURN-TLS"
)

// verdict is what becomes of one inbound packet.
type verdict uint8

const (
	pass verdict = iota
	drop
)

// inspector looks at every packet a listener reads before pion does. There is one per reader
// goroutine (the UDP listener, each TCP/TLS connection): its scratch message is reused, so
// checking a key allocates only what HMAC needs, and only for requests that carry credentials.
type inspector struct {
	s         *Server
	transport string
	msg       stun.Message
}

// inspect decides on packet p from src. user is the authenticated user of a request whose
// credentials checked out ("" otherwise). In order: a banned source is dropped; a STUN
// message pion's decoder would refuse is dropped; a request without credentials (USERNAME and
// MESSAGE-INTEGRITY) takes a token of its source's bucket (dropped over it: pion's 401 answer
// is larger than the request); a request with credentials is checked with the key pion would
// get, and a failure is counted and reported to the gate (whose ban then drops the source).
// ChannelData, indications and responses pass without a look past the header.
func (in *inspector) inspect(p []byte, src netip.AddrPort) (verdict, stunInfo) {
	s := in.s
	if s.gate != nil && s.gate.Banned(src) {
		s.bannedDropped.Add(1)
		return drop, stunInfo{}
	}
	info, kind := scanSTUN(p)
	switch {
	case kind == kindMalformed:
		return drop, info
	case kind != kindSTUN || info.class != classRequest:
		return pass, info
	case !info.authenticated():
		if !s.limiter.allow(src.Addr()) {
			s.rateLimited.Add(1)
			return drop, info
		}
		return pass, info
	}
	user := string(info.username)
	if in.verify(p, user, string(info.realm), src) {
		if s.gate != nil {
			s.gate.AuthSucceeded(src, user)
		}
		return pass, info
	}
	s.authFailures.Add(1)
	info.hasUser = false // not an authenticated user
	if s.gate != nil {
		s.gate.AuthFailed(src, quotaUser(user), in.transport)
		if s.gate.Banned(src) {
			s.bannedDropped.Add(1)
			return drop, info
		}
	}
	return pass, info // pion answers 400 after its own check
}

// verify checks p's MESSAGE-INTEGRITY with the key pion's AuthHandler would return.
func (in *inspector) verify(p []byte, user, realm string, src netip.AddrPort) bool {
	key, ok := in.s.keyFor(user, realm, src)
	if !ok {
		return false
	}
	in.msg.Raw = append(in.msg.Raw[:0], p...)
	if in.msg.Decode() != nil {
		return false
	}
	return stun.MessageIntegrity(key).Check(&in.msg) == nil
}

// gateConn wraps the TURN UDP listener socket: each datagram goes through the inspector;
// a user already at quota gets a 486 (Allocation Quota Reached) without reaching pion, and
// the allocation pion then creates is attributed to the user (the listener's generator).
type gateConn struct {
	*net.UDPConn
	in  inspector
	gen *generator
}

func (c *gateConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, ap, err := c.UDPConn.ReadFromUDPAddrPort(b)
		if err != nil {
			return n, nil, err
		}
		src := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		v, info := c.in.inspect(b[:n], src)
		if v == drop {
			continue
		}
		user := ""
		if info.method == methodAllocate && info.class == classRequest && info.hasUser {
			user = quotaUser(string(info.username))
			if c.in.s.atQuota(user) {
				c.in.s.refused.Add(1)
				c.reject(b[:n], src)
				continue
			}
		}
		if user == "" {
			c.gen.pending.Store(&noUser) // no allocation for data traffic
		} else {
			c.gen.pending.Store(&user)
		}
		return n, net.UDPAddrFromAddrPort(src), nil
	}
}

var noUser = ""

func (c *gateConn) reject(req []byte, to netip.AddrPort) {
	var id [stun.TransactionIDSize]byte
	copy(id[:], req[8:stunHeaderSize])
	res, err := stun.Build(
		stun.NewTransactionIDSetter(id),
		stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse),
		stun.CodeAllocQuotaReached,
		stun.Fingerprint,
	)
	if err != nil {
		return
	}
	_, _ = c.UDPConn.WriteToUDPAddrPort(res.Raw, to)
}

// gateListener wraps a TURN TCP or TLS listener: a banned source's connection is closed at
// once, and every message of the others goes through an inspector.
type gateListener struct {
	net.Listener
	s         *Server
	transport string
}

func (l *gateListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
		if err != nil {
			_ = c.Close()
			continue
		}
		src := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if l.s.gate != nil && l.s.gate.Banned(src) {
			l.s.bannedDropped.Add(1)
			_ = c.Close()
			continue // an error would stop pion's accept loop
		}
		return &gateStreamConn{Conn: c, src: src, frames: pturn.NewSTUNConn(c),
			in: inspector{s: l.s, transport: l.transport}, buf: make([]byte, maxStreamFrame)}, nil
	}
}

// maxStreamFrame is the largest TURN frame passed on from a stream: pion's read buffer
// (its default inbound MTU) drops anything as large or larger.
const maxStreamFrame = 1600

// errBanned closes a stream connection whose source is banned.
var errBanned = errors.New("turn: source banned")

// gateStreamConn frames a TCP/TLS connection into STUN messages and ChannelData (pion's own
// framer), inspects each, and hands pion's framer the ones that pass, one per Read.
type gateStreamConn struct {
	net.Conn
	src     netip.AddrPort
	frames  *pturn.STUNConn
	in      inspector
	buf     []byte
	pending []byte
}

func (c *gateStreamConn) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		n, _, err := c.frames.ReadFrom(c.buf)
		if err != nil {
			return 0, err
		}
		if n > len(c.buf) {
			continue // pion would drop it (over its MTU); its bytes were consumed
		}
		v, _ := c.in.inspect(c.buf[:n], c.src)
		if v == drop {
			if c.in.s.gate != nil && c.in.s.gate.Banned(c.src) {
				return 0, errBanned
			}
			continue
		}
		c.pending = c.buf[:n]
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}
