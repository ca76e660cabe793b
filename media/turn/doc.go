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
//   - the UDP listener socket is wrapped: Allocate requests are decoded with
//     pion/stun, a user already at quota gets a 486 (Allocation Quota
//     Reached) without reaching pion, and the allocation pion then creates is
//     attributed to that user. On TCP/TLS listeners only the global cap
//     applies (their per-connection goroutines would need per-connection
//     attribution; rooms use UDP).
//
// Exported API:
//
//	func NewServer(cfg Config) (*Server, error)
//	func (s *Server) Addr() net.Addr
//	func (s *Server) Stats() Stats
//	func (s *Server) Close() error
//	func KeyFromHA1(ha1Hex string) ([]byte, error)
//	func NewPeerFilter(allow []netip.Prefix, own []netip.Addr) *PeerFilter
//	func (f *PeerFilter) Allowed(ip netip.Addr) bool
package turn
