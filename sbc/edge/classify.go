package edge

import "bytes"

// Datagram is what a UDP datagram on a SIP port looks like before parsing.
type Datagram uint8

// The kinds of datagram the edge tells apart.
const (
	// DatagramSIP has a start line the SIP parser accepts: a request line whose third part
	// starts with "SIP" or "sip" (SIP/2.0), or a status line starting with it.
	DatagramSIP Datagram = iota
	// DatagramKeepalive is a CRLF keepalive (RFC 5626) or padding of NUL bytes, which the SIP
	// stack ignores.
	DatagramKeepalive
	// DatagramSTUN is a STUN message (RFC 5389 magic cookie), such as an RFC 5626 keepalive
	// sent to the SIP port. Dropped without a word: it is not an attack.
	DatagramSTUN
	// DatagramNotSIP is anything else: port-scanner probes, other protocols, garbage.
	DatagramNotSIP
)

func (d Datagram) String() string {
	switch d {
	case DatagramSIP:
		return "sip"
	case DatagramKeepalive:
		return "keepalive"
	case DatagramSTUN:
		return "stun"
	}
	return "not-sip"
}

// Classify tells what b is without allocating, by the rules of the SIP parser behind the edge
// (sipgo): the start line runs to the first CR, which must be followed by LF, and splits at its
// first two spaces; a request has a third part of three or more bytes without a space that
// starts with "SIP" or "sip", a response a first part that starts with it. Every datagram
// Classify calls [DatagramNotSIP] is one the parser would refuse (FuzzClassify checks this), so
// dropping them before parsing loses nothing.
func Classify(b []byte) Datagram {
	if len(b) <= 4 && len(bytes.Trim(b, "\r\n")) == 0 || len(bytes.Trim(b, "\x00")) == 0 {
		return DatagramKeepalive
	}
	if sipStartLine(b) {
		return DatagramSIP
	}
	if isSTUN(b) {
		return DatagramSTUN
	}
	return DatagramNotSIP
}

func sipStartLine(b []byte) bool {
	cr := bytes.IndexByte(b, '\r')
	if cr < 0 || cr+1 >= len(b) || b[cr+1] != '\n' {
		return false
	}
	line := b[:cr]
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 < 0 {
		return false
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 < 0 {
		return false
	}
	if third := rest[sp2+1:]; len(third) >= 3 && bytes.IndexByte(third, ' ') < 0 && isSIPToken(third[:3]) {
		return true
	}
	first := line[:sp1]
	return len(first) >= 3 && isSIPToken(first[:3])
}

func isSIPToken(b []byte) bool { return string(b) == "SIP" || string(b) == "sip" }

// isSTUN reports a STUN header: first two bits zero, length a multiple of 4 that fits, and the
// magic cookie 0x2112A442 (RFC 5389 section 6).
func isSTUN(b []byte) bool {
	if len(b) < 20 || b[0]&0xc0 != 0 || b[4] != 0x21 || b[5] != 0x12 || b[6] != 0xa4 || b[7] != 0x42 {
		return false
	}
	n := int(b[2])<<8 | int(b[3])
	return n%4 == 0 && 20+n <= len(b)
}
