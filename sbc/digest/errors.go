package digest

import "errors"

// Sentinel errors. Parse errors wrap ErrMalformed.
var (
	ErrMalformed = errors.New("digest: malformed credentials")
	ErrTooLong   = errors.New("digest: header too long")
	ErrNoSecret  = errors.New("digest: config needs a secret of at least 16 bytes")
	ErrAlgorithm = errors.New("digest: unsupported algorithm")
	ErrNoRealm   = errors.New("digest: config needs a realm")
)
