package edge

import (
	"encoding/binary"
	"net/netip"
)

// stunCookie is the STUN magic cookie (RFC 5389 section 6).
const stunCookie = 0x2112A442

// stunResponseMax is the size of the largest response BindingResponse writes: a header and an
// IPv6 XOR-MAPPED-ADDRESS.
const stunResponseMax = 20 + 4 + 20

// BindingResponse writes into dst (at least 44 bytes) the Binding success response to req, a
// STUN keepalive on a SIP port (RFC 5626 section 4.4.2), telling the sender src, its address
// as we see it, in XOR-MAPPED-ADDRESS (RFC 5389 section 15.2). It returns the response's length,
// or 0 when req is not a well-formed STUN Binding request (a response, an indication, another
// method, attributes that overrun the message): those get no answer. It does not allocate.
func BindingResponse(dst, req []byte, src netip.AddrPort) int {
	if !isSTUN(req) || len(dst) < stunResponseMax {
		return 0
	}
	if binary.BigEndian.Uint16(req[0:2]) != 0x0001 { // class request, method Binding
		return 0
	}
	// The attributes must tile the message exactly (type, length, value padded to 4).
	attrs := req[20 : 20+int(binary.BigEndian.Uint16(req[2:4]))]
	for len(attrs) > 0 {
		if len(attrs) < 4 {
			return 0
		}
		l := (int(binary.BigEndian.Uint16(attrs[2:4])) + 3) &^ 3
		if 4+l > len(attrs) {
			return 0
		}
		attrs = attrs[4+l:]
	}
	a := src.Addr().Unmap()
	alen, family := 8, byte(0x01)
	if a.Is6() {
		alen, family = 20, 0x02
	}
	binary.BigEndian.PutUint16(dst[0:2], 0x0101) // Binding success response
	binary.BigEndian.PutUint16(dst[2:4], uint16(4+alen))
	copy(dst[4:20], req[4:20])                     // magic cookie and transaction ID
	binary.BigEndian.PutUint16(dst[20:22], 0x0020) // XOR-MAPPED-ADDRESS
	binary.BigEndian.PutUint16(dst[22:24], uint16(alen))
	dst[24], dst[25] = 0, family
	binary.BigEndian.PutUint16(dst[26:28], src.Port()^(stunCookie>>16))
	if a.Is4() {
		ip := a.As4()
		for i := range 4 {
			dst[28+i] = ip[i] ^ dst[4+i]
		}
	} else {
		ip := a.As16()
		for i := range 16 {
			dst[28+i] = ip[i] ^ dst[4+i] // cookie then transaction ID
		}
	}
	return 24 + alen
}
