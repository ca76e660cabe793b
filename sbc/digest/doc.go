// Package digest is server-side SIP digest authentication (RFC 2617, RFC 7616, RFC 8760) for the
// registrar (401/WWW-Authenticate) and the B2BUA (407/Proxy-Authenticate).
//
// It has its own strict parser for Authorization / Proxy-Authorization values (length and
// parameter caps, no control characters, no duplicate parameters: OpenSIPS CVE-2023-28098 was a
// crafted Authorization header), stateless HMAC-signed nonces with an expiry (stale=true on an
// expired one), nonce-count replay protection in a bounded table, and verification from stored
// HA1 hashes (MD5 and SHA-256) with a constant-time compare.
//
// Unknown users are indistinguishable from known ones on the wire: they get the same challenge,
// the same failure and the same work (a verification against a dummy HA1). Verify reports
// UnknownUser only so the caller can log it; callers must answer it exactly like BadCredentials.
//
// Usage:
//
//	a, _ := digest.New(digest.Config{Realm: "video.example.com", Secret: secret})
//	user, res := a.Verify(req.Method.String(), req.Recipient.String(), hdr.Value(), lookup)
//	switch res {
//	case digest.OK: // authenticated as user
//	case digest.Stale: // respond 401/407 with a.Challenge(true)
//	default: // respond 401/407 with a.Challenge(false) (or 403 after a bad response)
//	}
//
// A cap on re-challenges per dialog or source is the caller's business: Result tells it what
// happened (Missing: the first challenge; BadCredentials/UnknownUser: a failed attempt).
package digest
