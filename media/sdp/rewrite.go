package sdp

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	psdp "github.com/pion/sdp/v3"
)

// Target says how to rewrite one m-line.
type Target struct {
	// Port is the relay RTP port the receiver of the rewritten SDP sends to
	// (RTCP is Port+1). 0 rejects the m-line.
	Port int
	// RTCPMux keeps an a=rtcp-mux attribute; when false it is removed.
	// It is never added.
	RTCPMux bool
	// Setup, when set, replaces the m-line's a=setup (RFC 4145) with this
	// role, or adds it after the other attributes when absent; duplicate
	// a=setup lines are dropped. Empty leaves a=setup as it is.
	Setup Setup
}

// Options drive [Rewrite].
type Options struct {
	// Addr is the relay address written into o=, c= and a=rtcp.
	Addr netip.Addr
	// Version is the o= session version to write.
	Version uint64
	// Media holds one Target per m-line index; m-lines without a Target are
	// rejected (port 0).
	Media []Target
	// StripICE removes a=candidate, a=ice-*, a=end-of-candidates and
	// a=remote-candidates (session and media level).
	StripICE bool
}

func (o Options) target(i int) Target {
	if i < len(o.Media) {
		return o.Media[i]
	}
	return Target{}
}

// Rewrite returns body rewritten per o. It uses pion/sdp when the body parses
// and the line-based fallback otherwise. The result always parses with
// pion/sdp; if it would not, Rewrite returns ErrUnparseable.
func Rewrite(body []byte, o Options) ([]byte, error) {
	if !o.Addr.IsValid() {
		return nil, fmt.Errorf("%w: no relay address", ErrNotSDP)
	}
	s, err := Parse(body)
	if err != nil {
		return nil, err
	}
	return s.Rewrite(o)
}

// Rewrite is [Rewrite] of the body s was parsed from (by [Parse]), without parsing it again.
// The Media and ICE fields are read as Parse set them.
func (s *Session) Rewrite(o Options) ([]byte, error) {
	if !o.Addr.IsValid() {
		return nil, fmt.Errorf("%w: no relay address", ErrNotSDP)
	}
	body, d := s.body, s.lines
	if len(d.session) == 0 && len(d.media) == 0 {
		return nil, ErrNotSDP
	}
	hp := newHoldPolicy(s, sessionHasICE(d), o)
	var sd psdp.SessionDescription
	if err := sd.Unmarshal(body); err == nil && len(sd.MediaDescriptions) == len(d.media) {
		rewritePion(&sd, o, hp)
		if out, err := sd.Marshal(); err == nil && parses(out) {
			return out, nil
		}
	}
	out := d.rewrite(o, hp)
	if !parses(out) {
		return nil, ErrUnparseable
	}
	return out, nil
}

// WithoutOrigin returns body without its o= line, for comparing two bodies
// for changes other than the version.
func WithoutOrigin(body []byte) []byte {
	var out []byte
	for _, l := range bytes.Split(body, []byte("\n")) {
		if !bytes.HasPrefix(l, []byte("o=")) {
			out = append(out, l...)
			out = append(out, '\n')
		}
	}
	return out
}

func parses(b []byte) bool {
	var sd psdp.SessionDescription
	return sd.Unmarshal(b) == nil
}

var iceAttrs = map[string]bool{
	"candidate": true, "remote-candidates": true, "end-of-candidates": true,
	"ice-ufrag": true, "ice-pwd": true, "ice-options": true, "ice-lite": true,
	"ice-mismatch": true, "ice-pacing": true,
}

// keepAttr applies the attribute filter shared by both paths.
func keepAttr(key string, t Target, o Options) bool {
	if o.StripICE && iceAttrs[key] {
		return false
	}
	if key == "rtcp" && t.Port == 0 {
		return false
	}
	if key == "rtcp-mux" && !t.RTCPMux {
		return false
	}
	return true
}

func rtcpValue(t Target, a netip.Addr) string {
	return fmt.Sprintf("%d %s", t.Port+1, connLine(a))
}

// relayConn returns the c= address to write in place of old: unspecified
// addresses (RFC 2543 hold) are kept unless holdOK is false, everything
// else becomes the relay.
func relayConn(old string, relay netip.Addr, holdOK bool) (nettype, addrtype, addr string) {
	if a, err := netip.ParseAddr(old); err == nil && a.IsUnspecified() && holdOK {
		return "IN", addrType(a), a.String()
	}
	return "IN", addrType(relay), relay.Unmap().String()
}

// holdPolicy says, per m-line and for the session c=, whether an unspecified
// c= address means hold and must be kept. In ICE SDP (JSEP) c=0.0.0.0 is only
// a placeholder for the candidates; once those are stripped the relay
// address must replace it or the peer would see a hold.
type holdPolicy struct {
	session bool
	media   []bool
}

func newHoldPolicy(info *Session, sessionICE bool, o Options) holdPolicy {
	keep := !(o.StripICE && (sessionICE || info.ICE))
	h := holdPolicy{session: keep, media: make([]bool, len(info.Media))}
	for i := range h.media {
		h.media[i] = keep
	}
	return h
}

func (h holdPolicy) at(i int) bool { return i >= len(h.media) || h.media[i] }

func sessionHasICE(d doc) bool {
	for _, l := range d.session {
		if k, _, _ := attr(l); k == "ice-ufrag" || k == "ice-lite" {
			return true
		}
	}
	return false
}

func rewritePion(sd *psdp.SessionDescription, o Options, hp holdPolicy) {
	sd.Origin.NetworkType, sd.Origin.AddressType, sd.Origin.UnicastAddress = "IN", addrType(o.Addr), o.Addr.Unmap().String()
	sd.Origin.SessionVersion = o.Version
	if ci := sd.ConnectionInformation; ci != nil && ci.Address != nil {
		ci.NetworkType, ci.AddressType, ci.Address.Address = relayConn(ci.Address.Address, o.Addr, hp.session)
		ci.Address.TTL, ci.Address.Range = nil, nil
	}
	sd.Attributes = filterPion(sd.Attributes, Target{RTCPMux: true}, o)
	for i, md := range sd.MediaDescriptions {
		t := o.target(i)
		md.MediaName.Port = psdp.RangedPort{Value: t.Port}
		if ci := md.ConnectionInformation; ci != nil && ci.Address != nil {
			ci.NetworkType, ci.AddressType, ci.Address.Address = relayConn(ci.Address.Address, o.Addr, hp.at(i))
			ci.Address.TTL, ci.Address.Range = nil, nil
		} else if sd.ConnectionInformation == nil || sd.ConnectionInformation.Address == nil {
			md.ConnectionInformation = &psdp.ConnectionInformation{NetworkType: "IN", AddressType: addrType(o.Addr),
				Address: &psdp.Address{Address: o.Addr.Unmap().String()}}
		}
		attrs := filterPion(md.Attributes, t, o)
		for j := range attrs {
			if attrs[j].Key == "rtcp" {
				attrs[j].Value = rtcpValue(t, o.Addr)
			}
		}
		md.Attributes = setupPion(attrs, t.Setup)
	}
}

// setupPion applies Target.Setup to a filtered attribute list.
func setupPion(in []psdp.Attribute, role Setup) []psdp.Attribute {
	if role == "" {
		return in
	}
	out, seen := in[:0], false
	for _, a := range in {
		if a.Key == "setup" {
			if seen {
				continue
			}
			a.Value, seen = string(role), true
		}
		out = append(out, a)
	}
	if !seen {
		out = append(out, psdp.Attribute{Key: "setup", Value: string(role)})
	}
	return out
}

func filterPion(in []psdp.Attribute, t Target, o Options) []psdp.Attribute {
	out := in[:0]
	for _, a := range in {
		if keepAttr(a.Key, t, o) {
			out = append(out, a)
		}
	}
	return out
}

// --- line-based fallback ---

var (
	sessionOrder = "vosiuepcbtzka"
	mediaOrder   = "micbka"
	mediaTypes   = map[string]bool{"audio": true, "video": true, "text": true, "application": true, "message": true}
	protoParts   = map[string]bool{"UDP": true, "RTP": true, "AVP": true, "SAVP": true, "SAVPF": true, "TLS": true,
		"DTLS": true, "SCTP": true, "AVPF": true, "TCP": true, "MSRP": true, "BFCP": true, "UDT": true, "IX": true,
		"MRCPv2": true, "FEC": true}
)

// rewrite applies o to the line model and emits it in canonical order with
// every strictly-parsed line regenerated or validated.
func (d doc) rewrite(o Options, hp holdPolicy) []byte {
	w := sdpWriter{o: o, sessionHold: hp.session, relay: connLine(o.Addr)}
	for _, typ := range []byte(sessionOrder) {
		w.sessionLines(typ, d.session)
	}
	for i, sec := range d.media {
		w.media(i, sec, hp.at(i))
	}
	return []byte(w.b.String())
}

// sdpWriter emits the rewritten lines of one description.
type sdpWriter struct {
	b              strings.Builder
	o              Options
	sessionHold    bool   // a session-level hold address may stay (holdPolicy)
	relay          string // the relay's c= value
	hasSessionConn bool   // a session-level c= line was written
}

func (w *sdpWriter) emit(typ byte, val string) {
	w.b.WriteByte(typ)
	w.b.WriteByte('=')
	w.b.WriteString(val)
	w.b.WriteString("\r\n")
}

// sessionLines writes the session-level lines of type typ (one each of v, o, s and c), or the
// default of a mandatory line that is missing.
func (w *sdpWriter) sessionLines(typ byte, lines []line) {
	found := false
	for _, l := range lines {
		if l.typ != typ {
			continue
		}
		switch typ {
		case 'v', 'o', 's', 'c':
			if found {
				continue // one each
			}
		}
		if w.sessionLine(l) {
			found = true
		}
	}
	if found {
		return
	}
	switch typ {
	case 'v':
		w.emit('v', "0")
	case 'o':
		w.emit('o', originLine("", w.o))
	case 's':
		w.emit('s', "-")
	case 't':
		w.emit('t', "0 0")
	}
}

// sessionLine writes one session-level line, regenerated or validated; it reports false for a
// line it drops.
func (w *sdpWriter) sessionLine(l line) bool {
	switch l.typ {
	case 'v':
		w.emit('v', "0")
	case 'o':
		w.emit('o', originLine(l.val, w.o))
	case 's':
		w.emit('s', nonEmpty(l.val))
	case 'c':
		w.emit('c', connValue(l.val, w.relay, w.sessionHold))
		w.hasSessionConn = true
	case 'b':
		if !validBandwidth(l.val) {
			return false
		}
		w.emit('b', l.val)
	case 't':
		if !validTiming(l.val) {
			return false
		}
		w.emit('t', l.val)
	case 'a':
		if k, _, _ := attr(l); !keepAttr(k, Target{RTCPMux: true}, w.o) {
			return false
		}
		w.emit('a', l.val)
	case 'i', 'e', 'p', 'k':
		w.emit(l.typ, l.val)
	default: // u, z: dropped (strictly parsed and rarely useful)
		return false
	}
	return true
}

// media writes media section i: its m= line, then its lines in canonical order, with the
// relay's c= line when neither the section nor the session has one and the target's setup.
// hold is the section's holdPolicy.
func (w *sdpWriter) media(i int, sec []line, hold bool) {
	t := w.o.target(i)
	w.emit('m', mediaLine(sec[0].val, t.Port))
	for _, typ := range []byte(mediaOrder[1:]) {
		conn, setup := false, false
		for _, l := range sec[1:] {
			if l.typ != typ {
				continue
			}
			switch typ {
			case 'c':
				if conn {
					continue
				}
				w.emit('c', connValue(l.val, w.relay, hold))
				conn = true
			case 'b':
				if validBandwidth(l.val) {
					w.emit('b', l.val)
				}
			case 'a':
				setup = w.mediaAttr(l, t, setup)
			default:
				w.emit(typ, l.val)
			}
		}
		if typ == 'c' && !conn && !w.hasSessionConn {
			w.emit('c', w.relay)
		}
		if typ == 'a' && !setup && t.Setup != "" {
			w.emit('a', "setup:"+string(t.Setup))
		}
	}
}

// mediaAttr writes one media-level a= line for target t: dropped, rewritten (rtcp, setup: one
// only) or kept. setup tells whether the setup line was written; it returns the new value.
func (w *sdpWriter) mediaAttr(l line, t Target, setup bool) bool {
	k, _, _ := attr(l)
	switch {
	case !keepAttr(k, t, w.o):
	case k == "rtcp":
		w.emit('a', "rtcp:"+rtcpValue(t, w.o.Addr))
	case k == "setup" && t.Setup != "":
		if !setup {
			w.emit('a', "setup:"+string(t.Setup))
		}
		return true
	default:
		w.emit('a', l.val)
	}
	return setup
}

func nonEmpty(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

func originLine(old string, o Options) string {
	user, id := "-", uint64(0)
	f := strings.Fields(old)
	if len(f) >= 1 {
		user = f[0]
	}
	if len(f) >= 2 {
		if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
			id = v
		}
	}
	return fmt.Sprintf("%s %d %d %s", user, id, o.Version, connLine(o.Addr))
}

func connValue(old, relay string, holdOK bool) string {
	if a := connAddr(old); a.IsValid() && a.IsUnspecified() && holdOK {
		return connLine(a)
	}
	return relay
}

// mediaLine regenerates an m= line with the given port. Media types and
// protos pion cannot represent become a rejected "application ... UDP"
// line, so the m-line count (which RFC 3264 answers must keep) is preserved.
func mediaLine(old string, port int) string {
	f := strings.Fields(old)
	media, proto, fmts := "application", "UDP", []string{"0"}
	if len(f) >= 1 && mediaTypes[f[0]] {
		media = f[0]
	} else {
		port = 0
	}
	if len(f) >= 3 && validProto(f[2]) {
		proto = f[2]
	} else {
		port = 0
	}
	if len(f) >= 4 {
		fmts = f[3:]
	}
	return fmt.Sprintf("%s %d %s %s", media, port, proto, strings.Join(fmts, " "))
}

func validProto(p string) bool {
	for part := range strings.SplitSeq(p, "/") {
		if !protoParts[part] {
			return false
		}
	}
	return true
}

func validBandwidth(v string) bool {
	typ, n, ok := strings.Cut(v, ":")
	if !ok {
		return false
	}
	if _, err := strconv.ParseUint(n, 10, 64); err != nil {
		return false
	}
	switch typ {
	case "CT", "AS", "TIAS", "RR", "RS":
		return true
	}
	return strings.HasPrefix(typ, "X-")
}

func validTiming(v string) bool {
	f := strings.Fields(v)
	if len(f) != 2 {
		return false
	}
	for _, x := range f {
		if _, err := strconv.ParseUint(x, 10, 64); err != nil {
			return false
		}
	}
	return true
}
