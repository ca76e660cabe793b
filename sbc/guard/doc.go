// Package guard is the caller filter of Portcullis: allow and deny lists, scanner fingerprints,
// ghost-call checks, rate limits, bans and per-room inbound policy. It is a pure decision engine:
// it takes what is known about a packet or request and returns a Verdict{Action, Rule, Reason};
// it does no SIP I/O, so it is cheap to call and easy to test.
package guard
