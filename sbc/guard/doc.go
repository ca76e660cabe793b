// Package guard is the caller filter of Portcullis: allow and deny lists, scanner fingerprints,
// ghost-call checks, rate limits, bans and per-room inbound policy. It is a pure decision engine:
// it takes what is known about a packet or request and returns a Verdict{Action, Rule, Reason};
// it does no SIP I/O, so it is cheap to call and easy to test.
//
// # Use
//
//	g, err := guard.New(guard.Config{Domain: "example.com", NodeAddrs: ips, Stealth: true, ...}, store)
//	go g.Run(ctx)                           // feeds, ban-set upkeep, pruning
//	reg, _ := registrar.New(..., g)         // failed logins count towards brute-force bans
//
//	// every out-of-dialog request, after parsing:
//	r := guard.RequestOf(req)               // once per request; r.Registered = a registered flow
//	v := g.Check(r)
//	switch v.Action { case guard.Drop: return; case guard.Reject: respond(v.Code) }
//
//	// an INVITE for a room, once the room is known:
//	v, pol := g.CheckCall(r, room, roomInCall) // the B2BUA's Decider
//	// pol.StripAutoAnswer: drop headers for which guard.IsAutoAnswer(name, value) holds
//
// # Rules
//
// Check runs, in order: registered flows (Request.Registered) and sources on the allow list
// pass untouched; then deny-list (source), threat-feed, banned (the cluster's bans and this
// node's own, not yet replicated), scanner-user-agent (bans), rate-limit (a token bucket per
// IPv4 address or IPv6 /64; flood bans when it keeps being hit), max-forwards (483/400),
// malformed (400), deny-list (caller URI), and for INVITE ghost-call (R-URI host is our IP, a
// number or no user), relay (a host that is not ours) and unknown-user; unknown users of any
// request count towards enumeration (bans). AuthFailed counts brute-force (bans). Rule names
// are the Rule* constants.
//
// Refusals by scan, ghost, flood and source rules are Drop when Config.Stealth is set, else
// Reject 403 (404 for unknown-user); protocol errors are always answered, and room policy is
// answered except to a Stranger in stealth mode (CheckCall, CallPolicy.Quiet), for whom a room it
// may not call looks like a name that is no room.
// Every refusal is counted (Counts), kept in a ring (Recent), sent to subscribers (Subscribe)
// and logged at most once per source and rule per minute.
//
// # Bans
//
// A ban covers the source's /32 or /64 and is written with store.Enqueue(state.PutBan(...)),
// so every node enforces it (the edge drops banned sources before parsing). Its length is
// BanTime doubled per earlier strike of the prefix, at most BanMax; strikes come from the
// cluster's record and from this node's memory (which outlives the cluster's expiry of old
// bans for a week). A prefix holding an allow-listed source, one of our node addresses or a
// registered room's flow (or one within 30 days: a site) is never banned: a spoofed UDP
// packet must not lock a room out, nor a site's rooms coming back after an outage.
//
// # Sites and the datagram meter
//
// A site (an address or /64 that rooms registered from, remembered for 30 days) gets a request
// budget of RequestRate × (1 + its rooms). It is never banned; a brute-force, enumeration or
// scanner hit from it demotes it instead (a stranger's budget for BanTime). Datagram meters every UDP datagram before parsing:
// DatagramRate per untrusted source; allow-listed sources, our own, sites and Config.Trusted
// ones pass.
//
// # Lists
//
// Config.Allow/Deny/ScannerUserAgents are merged with the cluster's state.Lists, recompiled
// whenever a SetLists command is applied. See Matcher for the pattern forms.
package guard
