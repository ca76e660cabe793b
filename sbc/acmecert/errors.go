package acmecert

import "errors"

// Errors of the package.
var (
	// ErrNoCertificate: no certificate has been obtained yet (the handshake fails).
	ErrNoCertificate = errors.New("acme: no certificate obtained yet")
	// ErrNoChallenge: a TLS-ALPN-01 or HTTP-01 request for which no challenge is pending.
	ErrNoChallenge = errors.New("acme: no pending challenge")
	// ErrChallengeType: the CA offered no challenge of the configured type.
	ErrChallengeType = errors.New("acme: challenge type not offered")
	// ErrBadCertificate: the stored certificate or key does not parse.
	ErrBadCertificate = errors.New("acme: bad certificate")
)
