// Package wirecheck checks SIP messages as they go on the wire, independently of the SIP stack
// that wrote them: Check applies RFC 3261's rules that a lenient parser lets through
// (single-valued headers present once, Content-Length equal to the body, mandatory headers,
// CRLF line ends, a Content-Type on every body), and Tshark feeds the same messages to
// Wireshark's SIP dissector and reports malformed packets and expert warnings. Tests capture
// what a node writes and run both.
package wirecheck
