package turn

import "errors"

var (
	// ErrBadConfig means the configuration is invalid.
	ErrBadConfig = errors.New("turn: bad configuration")
	// ErrQuota means the user (or the node) has reached its allocation quota.
	ErrQuota = errors.New("turn: allocation quota reached")
	// ErrPeerDenied means the relay may not send to that peer address.
	ErrPeerDenied = errors.New("turn: peer address denied")
	// ErrBadHA1 means a stored HA1 is not 32 hex digits.
	ErrBadHA1 = errors.New("turn: HA1 is not an MD5 hex digest")
)
