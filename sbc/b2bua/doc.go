// Package b2bua bridges calls as a back-to-back user agent: every call is two independent SIP
// dialogs (leg A toward the caller, leg B toward the callee) that share nothing but the media
// session, so no Call-ID, tag, Via, Contact or route of one side ever reaches the other.
//
// Inbound calls (from outside to sip:ROOM@DOMAIN) fork in parallel to every registered binding
// of the room, over the flow each registered on; the first 2xx wins and the other branches are
// cancelled. Outbound calls (a room dialling a SIP URI) must pass a 407 digest challenge with the
// room's credentials, and go to targets resolved per RFC 3263 with failover. The engine keeps the
// active calls in memory, writes answered calls and call records through the state store, and
// asks two seams: a Decider (the caller filter, *guard.Guard: its verdict and call policy are
// used as they are) before any call state exists, and a media Factory that rewrites SDP and
// relays RTP.
//
// New calls enter by their kind: HandleNewCall for an INVITE the node's edge admitted (with the
// request as the guard checked it), HandleTrunkCall for a call another node hands over (its
// signature verified by the edge), HandleInvite for a server with nothing in front.
package b2bua
