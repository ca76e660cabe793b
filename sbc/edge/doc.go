// Package edge is the socket layer between the internet and the SIP stack: it wraps the UDP,
// TCP and TLS sockets handed to sipgo so that abuse is refused before any SIP parsing.
//
//   - every datagram and every accepted connection is checked against an admission function
//     (the guard's banned/denied sources) without allocating;
//   - each datagram, and each complete message on a TCP/TLS connection, is metered against its
//     source's rate ([Meter]: the guard's per-source bucket) before anything parses it; a
//     connection over the rate is closed;
//   - oversized datagrams are dropped; TCP/TLS connections are capped per source address;
//   - datagrams that are not SIP ([Classify]: port-scanner probes, other protocols, garbage)
//     are dropped before the parser and reported (the guard records them and counts them
//     against the source's rate); STUN and CRLF keepalives are dropped or passed quietly;
//   - a TCP/TLS peer must finish each message within a read timeout once it started it, and an
//     idle connection (no message, no RFC 5626 CRLF keepalive) is closed after an idle timeout,
//     so slowloris-style peers cannot pin connections; messages over the size limit close the
//     connection;
//   - the close of a connection is reported (the registrar drops the flow's bindings).
package edge
