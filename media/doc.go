// Package media runs the media side of calls: one [Session] per call, one
// relayed stream per SDP m-line, on a shared UDP port pool.
//
// The B2BUA uses it like this:
//
//	m, err := media.NewManager(media.Config{BindAddr: bind, Advertise: public, PortMin: 20000, PortMax: 39999})
//	s, err := m.NewSession(callID, func(reason string) { /* send BYE with reason */ })
//	out, err := s.Offer(media.LegA, inviteBody, roomSource)  // forward out to leg B
//	// ErrPoolExhausted, ErrSourceBusy → 503; ErrTooManyStreams, ErrBadSDP → 488
//	out, err  = s.Answer(media.LegB, okBody, netip.AddrPort{}) // forward out to leg A
//	// re-INVITE in either direction: Offer/Answer again
//	s.Close()      // on BYE; ports drain before reuse
//	m.Close()      // on shutdown
//
// Exported API:
//
//	func NewManager(cfg Config) (*Manager, error)
//	func (m *Manager) NewSession(id string, onTimeout func(reason string)) (*Session, error)
//	func (m *Manager) Stats() Stats
//	func (m *Manager) Pool() *relay.Pool // shared with the TURN server
//	func (m *Manager) Close() error
//	func (s *Session) ID() string
//	func (s *Session) Offer(from Leg, body []byte, preferred netip.AddrPort) ([]byte, error)
//	func (s *Session) Answer(from Leg, body []byte, preferred netip.AddrPort) ([]byte, error)
//	func (s *Session) Streams() []StreamStats
//	func (s *Session) Close()
//
// Offer and Answer take the SDP body that leg `from` sent and return the body
// to forward to the other leg, with this session's relay address and the
// ports facing that other leg. Streams are kept by m-line index across
// re-INVITEs; new m-lines get new streams, rejected (port 0) m-lines hold no
// ports. `preferred` is where the leg's endpoint registered from (its IP is
// preferred when latching; the port is ignored because it is the SIP port);
// pass the zero value when unknown.
//
// TCP m-lines: BFCP over TCP and TCP/TLS (TCP/BFCP, TCP/TLS/BFCP) get a
// [relay.TCPStream] on two pairs of the same pool, listening on TCP on the
// pairs' RTP port numbers. The relay is passive toward both legs: the offer
// it forwards says a=setup:passive and its answer says a=setup:passive, so
// both endpoints connect to it (a room behind NAT can always connect out).
// That works when the offer says active, actpass or nothing (active by
// default) and the answer active or nothing. Anything else (an offer of
// passive or holdconn, an answer of passive or actpass, an unknown value)
// would need the relay to connect out; that m-line is rejected with port 0
// and a rate-limited warning names the reason, the rest of the call goes on.
// a=connection passes through: each leg's connection ends at the relay, a
// close on one leg closes the other, and both may connect again. TLS is
// spliced, not terminated, so a=fingerprint stays end to end. Connections are
// accepted only from the leg's signalled IP or `preferred` IP, one per leg;
// the counters (bytes, reads, refused connections as Dropped) and the
// activity that holds off the media timeout are the UDP streams' ones. Other
// TCP protos (TCP/MSRP...) are rejected with port 0.
//
// Limits (issue #14): an SDP with more than MaxStreams relayed m-lines (or 4x as many
// m-lines at all) is refused with ErrTooManyStreams before any port is taken. Leg A's offers
// count their ports against the caller's source (the IP of `preferred`) until leg B sends
// SDP or the session closes; past MaxUnansweredPorts a new offer is refused with
// ErrSourceBusy, again before any port is taken. Media is never sent to, nor latched from,
// an address the peer filter denies (loopback, internal networks, the node's own addresses;
// the list TURN uses) unless AllowPeers lists it.
//
// Media timeout: one ticker per manager checks every session; when neither
// direction of any stream has carried RTP (or, on a TCP stream, bytes) for Timeout (HoldTimeout while the
// call is on hold), counted from the later of the last packet and the last
// offer/answer, onTimeout is called once with "media timeout: no RTP for 30s".
package media
