package relay

import "encoding/binary"

// Kind classifies a datagram received on a relay socket.
type Kind uint8

const (
	// KindInvalid is anything that is neither RTP nor RTCP (STUN, junk, short).
	KindInvalid Kind = iota
	// KindRTP is an RTP version 2 packet with a full fixed header.
	KindRTP
	// KindRTCP is an RTCP version 2 packet (byte 1 in 192..223 per RFC 5761,
	// which covers SR/RR/SDES/BYE/APP 200-204 and the feedback types 205-207
	// that video needs for PLI/FIR).
	KindRTCP
	// KindDTLS is a DTLS record (first byte 20..63, RFC 7983), relayed on
	// the RTP socket so DTLS-SRTP handshakes pass through.
	KindDTLS
	// KindRaw is any other non-empty datagram on a raw (non-RTP) stream,
	// such as BFCP over UDP.
	KindRaw
)

// Classify checks the fixed header of b without allocating.
func Classify(b []byte) Kind {
	if len(b) >= 13 && b[0] >= 20 && b[0] <= 63 {
		return KindDTLS
	}
	if len(b) < 4 || b[0]>>6 != 2 {
		return KindInvalid
	}
	if pt := b[1]; pt >= 192 && pt <= 223 {
		if len(b) < 8 {
			return KindInvalid
		}
		return KindRTCP
	}
	// RTP: 12-byte fixed header plus CSRCs.
	if len(b) < 12+4*int(b[0]&0x0f) {
		return KindInvalid
	}
	return KindRTP
}

// rtpPT returns the payload type of an RTP packet (caller checked KindRTP).
func rtpPT(b []byte) uint8 { return b[1] & 0x7f }

func rtpSeq(b []byte) uint16 { return binary.BigEndian.Uint16(b[2:4]) }

func rtpTS(b []byte) uint32 { return binary.BigEndian.Uint32(b[4:8]) }

func rtpSSRC(b []byte) uint32 { return binary.BigEndian.Uint32(b[8:12]) }

// ptSet is a 128-bit payload-type set.
type ptSet [2]uint64

func (s *ptSet) add(pt uint8)      { s[(pt>>6)&1] |= 1 << (pt & 63) }
func (s *ptSet) has(pt uint8) bool { return s[(pt>>6)&1]&(1<<(pt&63)) != 0 }
func (s *ptSet) empty() bool       { return s[0] == 0 && s[1] == 0 }
