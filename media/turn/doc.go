// Package turn runs the TURN server (pion/turn v3) of a Portcullis node: a
// UDP listener (TCP and TLS optional), long-term credentials from the rooms'
// store and/or the TURN REST shared-secret scheme, relay ports taken from the
// same port pool as RTP, a per-user allocation quota and a peer filter that
// denies internal destinations by default.
//
// pion/turn v3.0.3 has no quota or allocation-event API, so:
//   - relay sockets come from a RelayAddressGenerator over the shared
//     [relay.Pool] and are wrapped so that Close decrements the live count and
//     returns the pair to the pool (draining if it carried traffic);
//   - the listener sockets are wrapped (gate.go). pion's AuthHandler only
//     hands pion a key and pion checks MESSAGE-INTEGRITY out of our sight, so
//     a wrong password never came back to us: every packet is first scanned
//     (no allocation), a banned source (Config.Gate) is dropped, a request
//     without credentials takes a token of its source's bucket (pion's 401 is
//     larger than the request), and a request with credentials has its
//     integrity checked with the key pion would get; failures are counted and
//     reported to the Gate, which bans like for SIP digest.
//   - on the UDP listener, a user already at quota gets a 486 (Allocation
//     Quota Reached) without reaching pion, and the allocation pion then
//     creates is attributed to that user. On TCP/TLS listeners only the
//     global cap applies (rooms use UDP).
//
// The peer deny list is media/peerfilter, shared with the media relay.
//
// Exported API:
//
//	func NewServer(cfg Config) (*Server, error)
//	func (s *Server) Addr() net.Addr
//	func (s *Server) Stats() Stats
//	func (s *Server) Close() error
//	func KeyFromHA1(ha1Hex string) ([]byte, error)
//	func RESTCredentials(secret, user string, ttl time.Duration, now time.Time) (username, password string)
//	type Gate interface { Banned; AuthFailed; AuthSucceeded }
//	func NewPeerFilter(allow []netip.Prefix, own []netip.Addr) *PeerFilter
//	func (f *PeerFilter) Allowed(ip netip.Addr) bool
package turn
