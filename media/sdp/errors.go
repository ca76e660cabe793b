package sdp

import "errors"

var (
	// ErrNotSDP means the body has no usable SDP structure.
	ErrNotSDP = errors.New("sdp: not an SDP body")
	// ErrUnparseable means even the rewritten, normalised body did not parse.
	ErrUnparseable = errors.New("sdp: output does not parse")
	// ErrBadSetup means an a=setup value is not one of RFC 4145's roles.
	ErrBadSetup = errors.New("sdp: bad a=setup")
)
