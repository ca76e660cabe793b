package turn

import "encoding/binary"

// STUN framing constants (RFC 5389).
const (
	stunHeaderSize  = 20
	stunMagicCookie = 0x2112A442

	attrUsername         = 0x0006
	attrMessageIntegrity = 0x0008
	attrRealm            = 0x0014

	classRequest = 0

	methodAllocate = 0x0003
)

// stunInfo is what the gate needs of a STUN message. username and realm alias the packet.
type stunInfo struct {
	method, class      uint16
	username, realm    []byte
	hasUser, integrity bool
}

// authenticated reports a request that carries long-term credentials.
func (i *stunInfo) authenticated() bool { return i.integrity && i.hasUser }

// isChannelData mirrors pion/turn's proto.IsChannelData: pion handles such a packet as relay
// data, whatever else it looks like.
func isChannelData(p []byte) bool {
	if len(p) < 4 || int(binary.BigEndian.Uint16(p[2:4])) > len(p)-4 {
		return false
	}
	n := binary.BigEndian.Uint16(p[0:2])
	return n >= 0x4000 && n <= 0x7FFF
}

// packetKind is how pion's read loop will treat a packet.
type packetKind uint8

const (
	kindOther     packetKind = iota // ChannelData, or not STUN (pion relays or ignores it)
	kindSTUN                        // a STUN message pion decodes
	kindMalformed                   // has the magic cookie but pion's decoder would refuse it
)

// scanSTUN classifies p as pion's read loop would (ChannelData first, then the STUN decoder)
// and, for a STUN message, walks its attributes exactly as pion/stun's Message.Decode does
// (first USERNAME, REALM and MESSAGE-INTEGRITY win, as with Message.Get). It neither copies
// nor allocates.
func scanSTUN(p []byte) (stunInfo, packetKind) {
	var info stunInfo
	if isChannelData(p) || len(p) < stunHeaderSize || binary.BigEndian.Uint32(p[4:8]) != stunMagicCookie {
		return info, kindOther
	}
	t := binary.BigEndian.Uint16(p[0:2])
	info.class = (t>>4)&1 | (t>>7)&2
	info.method = t&0xf | (t>>1)&0x70 | (t>>2)&0xf80
	size := int(binary.BigEndian.Uint16(p[2:4]))
	if len(p) < stunHeaderSize+size {
		return info, kindMalformed
	}
	b := p[stunHeaderSize : stunHeaderSize+size]
	for len(b) > 0 {
		if len(b) < 4 {
			return info, kindMalformed
		}
		typ, l := binary.BigEndian.Uint16(b[0:2]), int(binary.BigEndian.Uint16(b[2:4]))
		padded := (l + 3) &^ 3
		b = b[4:]
		if len(b) < padded {
			return info, kindMalformed
		}
		v := b[:l]
		b = b[padded:]
		switch typ {
		case attrUsername:
			if !info.hasUser {
				info.username, info.hasUser = v, true
			}
		case attrRealm:
			if info.realm == nil {
				info.realm = v
			}
		case attrMessageIntegrity:
			info.integrity = true
		}
	}
	return info, kindSTUN
}
