package sdp

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Direction is an SDP direction attribute.
type Direction string

// The four directions (RFC 3264 section 6.1).
const (
	SendRecv Direction = "sendrecv"
	SendOnly Direction = "sendonly"
	RecvOnly Direction = "recvonly"
	Inactive Direction = "inactive"
)

// Reverse returns the direction an answer mirrors (sendonly <-> recvonly).
func (d Direction) Reverse() Direction {
	switch d {
	case SendOnly:
		return RecvOnly
	case RecvOnly:
		return SendOnly
	}
	return d
}

// Media is what a relay needs to know about one m-line.
type Media struct {
	Index int    `json:"index"` // position among the m-lines, from 0
	Type  string `json:"type"`  // audio, video, application, ...
	Proto string `json:"proto"` // RTP/AVP, RTP/SAVPF, UDP/BFCP, TCP/BFCP, ...
	Port  int    `json:"port"`  // 0 = rejected / disabled
	// Addr is the effective connection address (media c=, else session c=);
	// unspecified (0.0.0.0) signals RFC 2543 hold; invalid if absent.
	Addr netip.Addr `json:"addr"`
	// RTCP is the a=rtcp address (its address defaults to Addr); zero when
	// a=rtcp is absent (RTCP then goes to Port+1).
	RTCP         netip.AddrPort   `json:"rtcp"`
	PayloadTypes []uint8          `json:"payload_types,omitempty"`
	ClockRates   map[uint8]uint32 `json:"clock_rates,omitempty"`
	Direction    Direction        `json:"direction"`
	RTCPMux      bool             `json:"rtcp_mux"`
	ICE          bool             `json:"ice"`               // carries a=candidate or a=ice-ufrag
	Content      string           `json:"content,omitempty"` // a=content (e.g. slides, main)
	Label        string           `json:"label,omitempty"`   // a=label
	// Setup is the raw a=setup value (RFC 4145), several joined by "\n";
	// empty when absent. [Media.SetupRole] interprets it.
	Setup string `json:"setup,omitempty"`
	// Connection is the raw a=connection value (new, existing), if any.
	Connection string `json:"connection,omitempty"`
}

// Rejected reports a port-0 m-line.
func (m Media) Rejected() bool { return m.Port == 0 }

// IsRTP reports an RTP-based proto (RTP/AVP, RTP/SAVPF, UDP/TLS/RTP/SAVPF...).
func (m Media) IsRTP() bool { return strings.Contains(strings.ToUpper(m.Proto), "RTP") }

// Relayable reports whether the UDP relay can carry the m-line: RTP, or a
// non-RTP proto over UDP (UDP/BFCP). TCP-based protos are not relayable
// here; see [Media.RelayableTCP].
func (m Media) Relayable() bool {
	if m.IsTCP() {
		return false
	}
	return m.IsRTP() || strings.HasPrefix(strings.ToUpper(m.Proto), "UDP")
}

// RTPAddr is the signalled RTP destination.
func (m Media) RTPAddr() netip.AddrPort {
	if !m.Addr.IsValid() || m.Port <= 0 || m.Port > 65535 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(m.Addr, uint16(m.Port))
}

// OnHold reports whether the m-line puts the sender's peer on hold: sendonly,
// inactive, or the RFC 2543 c=0.0.0.0 (not in ICE SDP, where 0.0.0.0 is a
// placeholder for the candidates).
func (m Media) OnHold() bool {
	return m.Direction == SendOnly || m.Direction == Inactive || (!m.ICE && m.Addr.IsValid() && m.Addr.IsUnspecified())
}

// Session is the parsed media view of an SDP body.
type Session struct {
	Media []Media `json:"media"`
	// ICE is set when any m-line or the session carries ICE attributes; then
	// c=0.0.0.0 is a JSEP placeholder, not a hold.
	ICE bool `json:"ice"`

	body  []byte // what Parse read, for [Session.Rewrite]
	lines doc
}

// OnHold reports whether every non-rejected RTP m-line is on hold (and there
// is at least one). Non-RTP lines such as BFCP carry no direction.
func (s *Session) OnHold() bool {
	n := 0
	for _, m := range s.Media {
		if m.Rejected() || !m.IsRTP() {
			continue
		}
		unspecHold := !s.ICE && m.Addr.IsValid() && m.Addr.IsUnspecified()
		if m.Direction != SendOnly && m.Direction != Inactive && !unspecHold {
			return false
		}
		n++
	}
	return n > 0
}

// Static payload-type clock rates (RFC 3551) for the common ones.
var staticClock = map[uint8]uint32{0: 8000, 3: 8000, 4: 8000, 8: 8000, 9: 8000, 13: 8000, 18: 8000, 31: 90000, 34: 90000}

// Parse extracts the media view from an SDP body. It is lenient (it accepts
// what pion rejects) and fails only on a body with no SDP lines at all.
func Parse(b []byte) (*Session, error) {
	d := parseLines(b)
	if len(d.session) == 0 && len(d.media) == 0 {
		return nil, ErrNotSDP
	}
	s := d.info()
	s.body, s.lines = b, d
	return s, nil
}

func (d doc) info() *Session {
	sessAddr, sessDir := d.sessionDefaults()
	s := &Session{}
	for i, sec := range d.media {
		m := Media{Index: i, Addr: sessAddr, Direction: sessDir, ClockRates: map[uint8]uint32{}}
		m.parseMLine(sec[0].val)
		m.parseAttrs(sec[1:])
		s.Media = append(s.Media, m)
		s.ICE = s.ICE || m.ICE
	}
	for _, l := range d.session {
		if k, _, _ := attr(l); k == "ice-ufrag" || k == "ice-lite" {
			s.ICE = true
		}
	}
	return s
}

// sessionDefaults returns the session-level connection address and direction, which every
// media section inherits unless it has its own.
func (d doc) sessionDefaults() (netip.Addr, Direction) {
	var addr netip.Addr
	dir := SendRecv
	for _, l := range d.session {
		switch l.typ {
		case 'c':
			addr = connAddr(l.val)
		case 'a':
			if v, ok := direction(l.val); ok {
				dir = v
			}
		}
	}
	return addr, dir
}

// parseMLine reads an m= line's value: media type, port, protocol and, for RTP, the payload
// types with their static clock rates.
func (m *Media) parseMLine(val string) {
	f := strings.Fields(val)
	if len(f) >= 1 {
		m.Type = f[0]
	}
	if len(f) >= 2 {
		p, _, _ := strings.Cut(f[1], "/")
		m.Port, _ = strconv.Atoi(p)
		if m.Port < 0 || m.Port > 65535 {
			m.Port = 0
		}
	}
	if len(f) >= 3 {
		m.Proto = f[2]
	}
	if m.IsRTP() && len(f) > 3 {
		for _, fm := range f[3:] {
			if pt, err := strconv.ParseUint(fm, 10, 8); err == nil && pt < 128 {
				m.PayloadTypes = append(m.PayloadTypes, uint8(pt))
				if r, ok := staticClock[uint8(pt)]; ok {
					m.ClockRates[uint8(pt)] = r
				}
			}
		}
	}
}

// parseAttrs reads the lines of a media section after its m= line.
func (m *Media) parseAttrs(lines []line) {
	var rtcpVal string
	for _, l := range lines {
		if l.typ == 'c' {
			m.Addr = connAddr(l.val)
			continue
		}
		k, v, ok := attr(l)
		if !ok {
			continue
		}
		if dir, ok := direction(k); ok {
			m.Direction = dir
			continue
		}
		if k == "rtcp" {
			rtcpVal = v
			continue
		}
		m.applyAttr(k, v)
	}
	if rtcpVal != "" {
		m.RTCP = rtcpAddr(rtcpVal, m.Addr)
	}
}

// applyAttr applies one media-level attribute (other than direction and rtcp).
func (m *Media) applyAttr(k, v string) {
	switch k {
	case "rtpmap":
		pt, rest, _ := strings.Cut(v, " ")
		_, rate, _ := strings.Cut(rest, "/")
		rate, _, _ = strings.Cut(rate, "/")
		p, err1 := strconv.ParseUint(pt, 10, 8)
		r, err2 := strconv.ParseUint(rate, 10, 32)
		if err1 == nil && err2 == nil && p < 128 && r > 0 {
			m.ClockRates[uint8(p)] = uint32(r)
		}
	case "rtcp-mux":
		m.RTCPMux = true
	case "candidate", "ice-ufrag", "ice-pwd":
		m.ICE = true
	case "content":
		m.Content = v
	case "label":
		m.Label = v
	case "setup":
		if m.Setup != "" {
			m.Setup += "\n"
		}
		m.Setup += strings.TrimSpace(v)
	case "connection":
		m.Connection = strings.TrimSpace(v)
	}
}

func direction(k string) (Direction, bool) {
	switch d := Direction(k); d {
	case SendRecv, SendOnly, RecvOnly, Inactive:
		return d, true
	}
	return "", false
}

// connAddr parses "IN IP4 1.2.3.4[/ttl[/n]]"; invalid on failure (FQDNs
// included: the relay cannot use them).
func connAddr(v string) netip.Addr {
	f := strings.Fields(v)
	if len(f) < 3 {
		return netip.Addr{}
	}
	a, _, _ := strings.Cut(f[2], "/")
	ip, err := netip.ParseAddr(a)
	if err != nil {
		return netip.Addr{}
	}
	return ip.Unmap()
}

// rtcpAddr parses an a=rtcp value "port [IN IP4 addr]".
func rtcpAddr(v string, def netip.Addr) netip.AddrPort {
	f := strings.Fields(v)
	if len(f) == 0 {
		return netip.AddrPort{}
	}
	port, err := strconv.ParseUint(f[0], 10, 16)
	if err != nil || port == 0 {
		return netip.AddrPort{}
	}
	a := def
	if len(f) >= 4 {
		if ip, err := netip.ParseAddr(f[3]); err == nil {
			a = ip.Unmap()
		}
	}
	if !a.IsValid() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a, uint16(port))
}

// addrType returns the SDP address type of a.
func addrType(a netip.Addr) string {
	if a.Is4() || a.Is4In6() {
		return "IP4"
	}
	return "IP6"
}

func connLine(a netip.Addr) string { return fmt.Sprintf("IN %s %s", addrType(a), a.Unmap()) }

func (d Direction) String() string { return string(d) }
