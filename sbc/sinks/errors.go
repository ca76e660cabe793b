package sinks

import "errors"

// Errors of the sinks package.
var (
	ErrBadSpec  = errors.New("sinks: bad sink specification")
	ErrRejected = errors.New("sinks: delivery refused by the receiver")
	ErrClosed   = errors.New("sinks: sink closed")
)
