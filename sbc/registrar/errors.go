package registrar

import "errors"

// Sentinel errors.
var (
	ErrConfig     = errors.New("registrar: bad config")
	ErrBadContact = errors.New("registrar: bad Contact")
	ErrBadRequest = errors.New("registrar: malformed REGISTER")
)
