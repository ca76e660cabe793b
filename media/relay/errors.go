package relay

import "errors"

var (
	// ErrPoolExhausted means every port pair is in use or draining.
	ErrPoolExhausted = errors.New("relay: port pool exhausted")
	// ErrPoolClosed means the pool has been closed.
	ErrPoolClosed = errors.New("relay: pool closed")
	// ErrBadConfig means a configuration value is invalid.
	ErrBadConfig = errors.New("relay: bad configuration")
	// ErrPortUnavailable means a specific port was asked for and cannot be had.
	ErrPortUnavailable = errors.New("relay: port unavailable")
)
