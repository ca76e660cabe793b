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
// other UDP protos) are relayed as raw datagrams. TCP m-lines cannot go
// through the UDP relay ([Media.Relayable] reports false). BFCP over TCP and
// over TLS on TCP (TCP/BFCP, TCP/TLS/BFCP, RFC 8856) go through the TCP relay
// ([Media.RelayableTCP]); [Media.SetupRole] reads the RFC 4145 a=setup role
// (absent means active) and a [Target]'s Setup rewrites it, so the relay can
// take the passive role toward each leg. a=connection and a=fingerprint pass
// through untouched. Other TCP protos (TCP/MSRP, which carries addresses in
// its messages) are rejected with port 0, which the RFC 3264 answer rules
// handle as "stream unavailable" rather than a failed call.
package sdp
