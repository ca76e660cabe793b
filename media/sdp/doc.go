// Package sdp reads the media facts a relay needs out of an SDP body and
// rewrites the body so that media flows through the relay.
//
// [Parse] extracts, per m-line: media type, proto, signalled address and
// ports, payload types and clock rates, direction, rtcp-mux, content and label.
// [Rewrite] replaces o=, c= (session and media level), m= ports and a=rtcp with
// the relay's addresses, bumps the o= session version, rejects m-lines with
// port 0, removes a=rtcp-mux unless told to keep it and removes ICE attributes
// on request. It leaves everything else (a=crypto, a=fingerprint, a=setup,
// directions, a=label, a=content, codecs) untouched.
//
// Rewrite uses github.com/pion/sdp/v3. pion is strict (RFC 4566 line order,
// mandatory t=, no unknown line types); when it refuses a body, Rewrite falls
// back to a line-based rewriter that also puts the lines into canonical order,
// drops unknown line types and supplies missing v=/o=/s=/t= lines. Either way
// the output is checked to parse with pion before it is returned.
//
// Non-RTP transports: UDP m-lines that are not RTP (UDP/BFCP, UDP/TLS/BFCP,
// other UDP protos) are relayed as raw datagrams. TCP m-lines (TCP/BFCP,
// TCP/TLS/BFCP, TCP/MSRP...) cannot go through the UDP relay; [Relayable]
// reports false for them and the caller rejects them with port 0, which the
// RFC 3264 answer rules and BFCP clients (RFC 8856) handle as "content sharing
// unavailable" rather than a failed call.
package sdp
